# Two commands on a fresh machine:
#   make demo   builds hvhost and the test guests, then runs the hello VM
#   make test   builds everything and runs the whole test suite
.PHONY: all build guests plugins demo test bench clean

PLUGIN_DIR := $(CURDIR)/.build/example-plugins

all: build guests plugins

build:
	swift build

guests:
	$(MAKE) -C guests

plugins:
	$(MAKE) -C Plugins/Examples/EduDevice OUT=$(PLUGIN_DIR)

# The hello guest ends with debug-exit value 0, which hvhost reports as status 1
# (QEMU's isa-debug-exit convention): that is success here.
demo: build guests
	.build/debug/hvhost run examples/hello.vmx; test $$? -eq 1

test: all
	$(MAKE) -C Plugins/Examples/EduDevice OUT=$(PLUGIN_DIR) check
	swift test

bench: guests
	python3 bench/run.py
	python3 bench/net.py
	python3 bench/sched.py

clean:
	$(MAKE) -C guests clean
	rm -rf .build
