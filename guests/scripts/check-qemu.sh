#!/bin/bash
# Boot each test guest under QEMU (+KVM) and check its serial output and exit
# status. Usage: scripts/check-qemu.sh [guest...]   (run from guests/)
# Env: QEMU (binary), QEMU_CPU (default max,arch-capabilities=off: plain
# "-cpu max" aborts on this PVM host setting MSR 0x10a), TIMEOUT (s, default 60),
# KEEP_LOGS=1 to keep build/qemu-<guest>.log on success too.
set -u
cd "$(dirname "$0")/.."
QEMU=${QEMU:-qemu-system-x86_64}
QEMU_CPU=${QEMU_CPU:-max,arch-capabilities=off}
TIMEOUT=${TIMEOUT:-60}
guests=("$@")
[ ${#guests[@]} -eq 0 ] && guests=(hello pci-scan timer triple-fault edu)

# Per guest: extra QEMU args, expected QEMU exit status, required output lines
# (extended regexes, one per line, each must match a whole line).
declare -A ARGS STATUS EXPECT
ARGS[hello]='-append hvhost-test-cmdline'
STATUS[hello]=1
EXPECT[hello]='Hello from the hvhost test guest
hello from ring 3
memory: [0-9]+ MiB
cmdline: hvhost-test-cmdline
EXIT 0'
ARGS[pci-scan]=''
STATUS[pci-scan]=1
EXPECT[pci-scan]='pci 00:00\.0 [0-9a-f]{4}:[0-9a-f]{4} class 0600.*
pci 00:[0-9a-f]{2}\.[0-7] 8086:100e class 0200 bar0=0x[0-9a-f]+ \(mem32, size 0x20000\) bar1=0x[0-9a-f]+ \(io, size 0x40\) irq [0-9]+ pin 1
pci: [0-9]+ functions
EXIT 0'
ARGS[timer]=''
STATUS[timer]=1
EXPECT[timer]='pit: [0-9]+ ticks in 2 s
lapic: [0-9]+ ticks in 2 s
EXIT 0'
ARGS[triple-fault]=''
STATUS[triple-fault]=0
EXPECT[triple-fault]='about to triple fault'
ARGS[cpuid]=''
STATUS[cpuid]=1
EXPECT[cpuid]='cpuid: hypervisor=1 .*
EXIT 0'
ARGS[bench]='-append pio=1000'
STATUS[bench]=1
EXPECT[bench]='bench: done .*
EXIT 0'
ARGS[burn]='-append seconds=3'
STATUS[burn]=1
EXPECT[burn]='burn: [0-9]+
burn: done [0-9]+
EXIT 0'
ARGS[smp]='-smp 2'
STATUS[smp]=1
EXPECT[smp]='smp: AP 1 online
smp: 2 CPUs, ipi ok, counter 40000
EXIT 0'
ARGS[net-ping]='-device pcnet,mac=52:54:00:12:34:56 -append role=info'
STATUS[net-ping]=1
EXPECT[net-ping]='pcnet: mac 52:54:00:12:34:56 aprom signature 5757
EXIT 0'
ARGS[vmxnet-ping]='-device vmxnet3,mac=52:54:00:12:34:57 -append role=info'
STATUS[vmxnet-ping]=1
EXPECT[vmxnet-ping]='vmxnet: 00:0[0-9a-f]\.0 bar0 0x[0-9a-f]+ bar1 0x[0-9a-f]+ vrrs 0x[0-9a-f]+ uvrs 0x[0-9a-f]+ mac 52:54:00:12:34:57 link up [0-9]+ Mbps
vmxnet: activated, 1 tx / 1 rx queues, rings 32, mtu 1500, msi-x, unicast\+broadcast
EXIT 0'
ARGS[reboot]=''
STATUS[reboot]=0
EXPECT[reboot]='reboot: requesting reset'
# legacy-io needs hvhost's devext probe device; QEMU has none, so it says so.
ARGS[legacy-io]=''
STATUS[legacy-io]=7
EXPECT[legacy-io]='FAIL: legacy-io: probe device 1234:11e2 not found
EXIT 3'
ARGS[edu]='-device edu'
STATUS[edu]=1
EXPECT[edu]='edu: id 0x[0-9a-f]{6}ed version [0-9]+\.[0-9]+
edu: liveness ok
edu: factorial\(10\) = 3628800 \(polled\)
edu: irq [0-9]+: raise 0x9abc -> status 0x9abc, acked, calls 3
edu: ok
EXIT 0'
# devext's probe device is a test fixture with no QEMU twin: the guest boots, scans
# and reports it missing.
ARGS[devext]=''
STATUS[devext]=7
EXPECT[devext]='FAIL: devext: probe device 1234:11e2 not found
EXIT 3'
# QEMU has no BusLogic model: the guest boots and reports the adapter missing.
ARGS[buslogic-disk]=''
STATUS[buslogic-disk]=5
EXPECT[buslogic-disk]='FAIL: buslogic: no 104b:1040 on bus 0
EXIT 2'

# svga-draw idles forever once drawn; bench=1 times the FIFO for 1 s each way and exits.
ARGS[svga-draw]='-vga vmware -append bench=1'
STATUS[svga-draw]=1
EXPECT[svga-draw]='svga-draw: mode 800x600x32 pitch 3200 offset 0
svga-bench: update [0-9]+ ops [0-9]+ ticks
EXIT 0'

# console-input waits for keys; once=1 stops after the i8042 and vmmouse bring-up.
ARGS[console-input]='-append once=1'
STATUS[console-input]=3
EXPECT[console-input]='input: vmmouse absolute
input: ready
EXIT 1'

fails=0
for g in "${guests[@]}"; do
    elf=build/$g.elf
    log=build/qemu-$g.log
    if [ ! -f "$elf" ] || [ -z "${STATUS[$g]+x}" ]; then
        echo "FAIL $g: no $elf or no expectations"; fails=$((fails + 1)); continue
    fi
    start=$(date +%s%N)
    # shellcheck disable=SC2086
    timeout "$TIMEOUT" "$QEMU" -enable-kvm -M pc -m 128 -cpu "$QEMU_CPU" -display none \
        -no-reboot -serial stdio -device isa-debug-exit,iobase=0x501,iosize=2 \
        ${ARGS[$g]} -kernel "$elf" </dev/null >"$log" 2>&1
    st=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    secs="$((ms / 1000)).$((ms % 1000 / 100))"
    why=""
    [ "$st" -eq "${STATUS[$g]}" ] || why="exit status $st, want ${STATUS[$g]}"
    while IFS= read -r re; do
        grep -qxE -- "$re" "$log" || why="${why:+$why; }missing line /$re/"
    done <<<"${EXPECT[$g]}"
    if [ "$g" = triple-fault ] && grep -q '^EXIT ' "$log"; then why="${why:+$why; }guest exited instead"; fi
    if [ -z "$why" ]; then
        printf 'PASS %-13s (%s s)\n' "$g" "$secs"
        [ "${KEEP_LOGS:-0}" = 1 ] || rm -f "$log"
    else
        printf 'FAIL %-13s (%s s): %s\n' "$g" "$secs" "$why"
        sed 's/^/    | /' "$log"
        fails=$((fails + 1))
    fi
done
[ "$fails" -eq 0 ] && echo "check-qemu: all passed" || echo "check-qemu: $fails failed"
exit $((fails > 0))
