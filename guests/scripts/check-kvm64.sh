#!/bin/bash
# Boot guests through the 64-bit ELF entry with the raw-KVM loader
# (build/kvm-run64) and check them. Only guests that need no interrupt
# controller or PCI devices can run there: hello, triple-fault.
set -u
cd "$(dirname "$0")/.."
fails=0
check() { # name expected-status cmdline regex...
    local g=$1 want=$2 cl=$3; shift 3
    local log=build/kvm64-$g.log
    timeout "${TIMEOUT:-60}" build/kvm-run64 "build/$g.elf" ${cl:+"$cl"} >"$log" 2>&1
    local st=$? why=""
    [ "$st" -eq "$want" ] || why="exit status $st, want $want"
    for re in "$@"; do grep -qxE -- "$re" "$log" || why="${why:+$why; }missing /$re/"; done
    if [ -z "$why" ]; then echo "PASS $g (64-bit entry)"; rm -f "$log"
    else echo "FAIL $g (64-bit entry): $why"; sed 's/^/    | /' "$log"; fails=$((fails + 1)); fi
}
check hello 1 "kvm64-cmdline" 'rt: entry=long64 .*' 'Hello from the hvhost test guest' \
    'hello from ring 3' 'memory: 128 MiB' 'cmdline: kvm64-cmdline' 'EXIT 0'
check triple-fault 0 "" 'about to triple fault' 'kvm-run64: shutdown \(triple fault\)'
[ "$fails" -eq 0 ] && echo "check-kvm64: all passed" || echo "check-kvm64: $fails failed"
exit $((fails > 0))
