# SPDX-License-Identifier: GPL-2.0-only
# tern: one non-recursive Makefile. Objects go to build/ (override with O=).
#
#   make            build everything
#   make check      install missing packages, build, run every test
#   make demo       install missing packages, build, show the guest running
#   make deps       install missing Debian packages (apt-get, as root)
#   make fuzz       run the libFuzzer targets in tests/fuzz/ (needs clang)
#   WERROR=0        do not turn warnings into errors
#   SANITIZE=1      build with ASan + UBSan (objects in build-san/)
#   SANITIZE=thread build with ThreadSanitizer (objects in build-tsan/)
#   V=1             show the commands

O        ?= build
ifeq ($(SANITIZE),1)
O        := build-san
endif
ifeq ($(SANITIZE),thread)
O        := build-tsan
endif
WERROR   ?= 1
V        ?= 0

CC       ?= cc
PROTOC_C ?= protoc-c
PKGS     := libevent libprotobuf-c libcap liburing libzstd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell pkg-config --libs cmocka 2>/dev/null)

# CFLAGS, CPPFLAGS and LDFLAGS are the builder's (dpkg-buildflags sets
# them, or 'make CFLAGS=-O0'): what the build needs goes on top of them.
CFLAGS   ?= -O2 -g
override CFLAGS += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wshadow \
	    -Wmissing-prototypes -fno-strict-aliasing -D_GNU_SOURCE \
	    -I. -I$(O) $(PKG_CFLAGS)
ifeq ($(WERROR),1)
override CFLAGS += -Werror
endif
ifeq ($(SANITIZE),1)
override CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer \
	    -fno-sanitize-recover=undefined
override LDFLAGS += -fsanitize=address,undefined
endif
# -Wno-tsan: gcc warns that TSan does not model atomic_thread_fence
# (dest_postcopy_verify has one, after joins TSan sees anyway).
ifeq ($(SANITIZE),thread)
override CFLAGS += -fsanitize=thread -fno-omit-frame-pointer -Wno-tsan
override LDFLAGS += -fsanitize=thread
endif
override LDLIBS += $(PKG_LIBS) -lpthread

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-7s %s\n' $(1) $(2);
endif

# ---- protobuf schemas -------------------------------------------------
PROTOS      := $(wildcard proto/*.proto)
PROTO_C     := $(patsubst proto/%.proto,$(O)/proto/%.pb-c.c,$(PROTOS))
PROTO_H     := $(PROTO_C:.c=.h)
PROTO_OBJS  := $(PROTO_C:.c=.o)

# Generated sources are kept (make would delete them as intermediates).
.SECONDARY: $(PROTO_C) $(PROTO_H)

$(O)/proto/%.pb-c.c $(O)/proto/%.pb-c.h: proto/%.proto
	$(call msg,PROTOC,$<)
	@mkdir -p $(O)/proto
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(O)/proto $<

# ---- common/: the shared library ---------------------------------------
COMMON_SRCS := $(wildcard common/*.c)
COMMON_OBJS := $(patsubst %.c,$(O)/%.o,$(COMMON_SRCS)) $(PROTO_OBJS)
LIBCOMMON   := $(O)/libtern.a

$(LIBCOMMON): $(COMMON_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# ---- programs -----------------------------------------------------------
# Each program is the objects of its directory that are not another
# program's files.  vmm/ also holds vmmctl (its control client, the
# files vmm/vmmctl*.c), migd/ migctl (migd/migctl*.c).
VMMCTL_SRCS := $(wildcard vmm/vmmctl*.c)
VMM_SRCS    := $(filter-out $(VMMCTL_SRCS),$(wildcard vmm/*.c)) $(wildcard vmm/*.S)
VMM_OBJS    := $(patsubst %,$(O)/%.o,$(basename $(VMM_SRCS)))
VMMCTL_OBJS := $(patsubst %.c,$(O)/%.o,$(VMMCTL_SRCS))

MIGCTL_SRCS := $(wildcard migd/migctl*.c)
MIGD_SRCS   := $(filter-out $(MIGCTL_SRCS),$(wildcard migd/*.c))
MIGD_OBJS   := $(patsubst %.c,$(O)/%.o,$(MIGD_SRCS))
MIGCTL_OBJS := $(patsubst %.c,$(O)/%.o,$(MIGCTL_SRCS))

FAULTD_SRCS := $(wildcard faultd/*.c)
FAULTD_OBJS := $(patsubst %.c,$(O)/%.o,$(FAULTD_SRCS))

PROGS := $(O)/bin/vmm $(O)/bin/vmmctl
ifneq ($(MIGD_SRCS),)
PROGS += $(O)/bin/migd
endif
ifneq ($(MIGCTL_SRCS),)
PROGS += $(O)/bin/migctl
endif
ifneq ($(FAULTD_SRCS),)
PROGS += $(O)/bin/faultd
endif

$(O)/bin/vmm: $(VMM_OBJS) $(LIBCOMMON)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bin/vmmctl: $(VMMCTL_OBJS) $(LIBCOMMON)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bin/migd: $(MIGD_OBJS) $(LIBCOMMON)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bin/migctl: $(MIGCTL_OBJS) $(LIBCOMMON)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bin/faultd: $(FAULTD_OBJS) $(LIBCOMMON)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- compile rules --------------------------------------------------------
$(O)/%.o: %.c | $(PROTO_H)
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(O)/%.o: %.S
	$(call msg,AS,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(O)/proto/%.o: $(O)/proto/%.c
	$(call msg,CC,$<)
	$(Q)$(CC) $(CPPFLAGS) $(filter-out -Wmissing-prototypes -Wshadow,$(CFLAGS)) -c -o $@ $<

# ---- tests ------------------------------------------------------------------
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(O)/tests/%,$(UNIT_SRCS))
# Kept: as intermediates of the chained rule below, make would delete
# them after a first build and compile them all again on the next.
.SECONDARY: $(patsubst %.c,$(O)/%.o,$(UNIT_SRCS))

$(O)/tests/test_%: $(O)/tests/unit/test_%.o $(LIBCOMMON)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter-out $(LIBCOMMON),$^) $(LIBCOMMON) \
		$(CMOCKA_LIBS) $(LDLIBS)

# A unit test of one migd or faultd module links that module too (before
# the common library, which the module may need).
$(O)/tests/test_place: $(O)/migd/place.o
$(O)/tests/test_pace: $(O)/migd/pace.o
$(O)/tests/test_jobstate: $(O)/migd/jobstate.o
$(O)/tests/test_history: $(O)/migd/history.o
$(O)/tests/test_params: $(O)/migd/params.o
$(O)/tests/test_uffdcheck: $(O)/faultd/uffdcheck.o

$(O)/tests/unit/%.o: tests/unit/%.c | $(PROTO_H)
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(CMOCKA_CFLAGS) -MMD -MP -c -o $@ $<

# ---- top-level targets ------------------------------------------------------
.DEFAULT_GOAL := all
.PHONY: all deps check demo clean unit integration

all: $(PROGS) $(UNIT_BINS)

deps:
	$(Q)scripts/deps.sh

# make check: deps first, then a recursive make so that pkg-config is
# evaluated after the packages exist on a fresh machine.
check: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)O=$(O) tests/run.sh

unit: all
	$(Q)O=$(O) tests/run.sh unit

integration: all
	$(Q)O=$(O) tests/run.sh integration

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)O=$(O) scripts/demo.sh

clean:
	rm -rf build build-san build-tsan build-fuzz

-include $(shell find $(O) -name '*.d' 2>/dev/null)

# ---- test helpers: integration test programs and guest images ------------
ITEST_SRCS := $(wildcard tests/integration/*.c)
ITEST_BINS := $(patsubst tests/integration/%.c,$(O)/tests/itest_%,$(ITEST_SRCS))
TEST_IMAGES := $(patsubst tests/images/%.S,$(O)/tests/%.img,$(wildcard tests/images/*.S))

$(O)/tests/itest_%: tests/integration/%.c $(LIBCOMMON) | $(PROTO_H)
	$(call msg,CCLD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBCOMMON) $(LDLIBS)

$(O)/tests/%.img: tests/images/%.S $(wildcard tests/images/*.inc)
	$(call msg,IMAGE,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) -m32 -nostdlib -ffreestanding -c -o $(@:.img=.o) $<
	$(Q)ld -m elf_i386 -Ttext=0 -e _start -o $(@:.img=.elf) $(@:.img=.o)
	$(Q)objcopy -O binary -j .text $(@:.img=.elf) $@

all: $(ITEST_BINS) $(TEST_IMAGES)

# ---- install ------------------------------------------------------------------
#   make install [PREFIX=/usr/local] [DESTDIR=/staging]
# Daemons and vmmctl go to PREFIX/sbin, migctl (a user command) to
# PREFIX/bin, man pages to PREFIX/share/man, the systemd units to
# PREFIX/lib/systemd/system (systemd reads /usr/local/lib/systemd/system
# too); the units' paths are rewritten to match PREFIX.  The schemas go
# to PREFIX/share/tern/proto, for agents that speak the RPC
# (tern-rpc(7)) and for reading migd.state.
PREFIX  ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
PROTODIR ?= $(PREFIX)/share/tern/proto
INSTALL ?= install
MAN1    := man/migctl.1
MAN7    := man/tern-rpc.7 man/tern-migration.7
MAN8    := man/vmm.8 man/vmmctl.8 man/migd.8 man/faultd.8
UNITS   := systemd/vmm@.service systemd/migd.service systemd/faultd.service
BIN_PROGS  := $(filter %/migctl,$(PROGS))
SBIN_PROGS := $(filter-out %/migctl,$(PROGS))

.PHONY: install uninstall
install: $(PROGS)
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(PROTODIR)
	$(Q)$(INSTALL) -m 0755 $(SBIN_PROGS) $(DESTDIR)$(SBINDIR)/
	$(Q)$(if $(BIN_PROGS),$(INSTALL) -m 0755 $(BIN_PROGS) $(DESTDIR)$(BINDIR)/,true)
	$(Q)$(if $(MAN1),$(INSTALL) -m 0644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/,true)
	$(Q)$(INSTALL) -m 0644 $(MAN7) $(DESTDIR)$(MANDIR)/man7/
	$(Q)$(INSTALL) -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	$(Q)$(INSTALL) -m 0644 $(PROTOS) $(DESTDIR)$(PROTODIR)/
	$(Q)for u in $(UNITS); do \
		sed -e 's|/usr/local/sbin/|$(SBINDIR)/|g' \
		    -e 's|/usr/local/bin/|$(BINDIR)/|g' $$u \
			> $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp && \
		mv $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; \
	done

uninstall:
	rm -f $(addprefix $(DESTDIR)$(SBINDIR)/,$(notdir $(SBIN_PROGS))) \
	      $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(BIN_PROGS))) \
	      $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(MAN1))) \
	      $(addprefix $(DESTDIR)$(MANDIR)/man7/,$(notdir $(MAN7))) \
	      $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(MAN8))) \
	      $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS))) \
	      $(addprefix $(DESTDIR)$(PROTODIR)/,$(notdir $(PROTOS)))
	rmdir $(DESTDIR)$(PROTODIR) $(DESTDIR)$(PREFIX)/share/tern 2>/dev/null || true

# ---- make bench: issue 5's speed scenarios beside this machine's limits ----
# tests/bench/*.c are stand-alone measuring programs ($(O)/tests/bench_NAME);
# tests/bench/run.sh runs the migrations and prints the table (README.md).
BENCH_SRCS := $(wildcard tests/bench/*.c)
BENCH_BINS := $(patsubst tests/bench/%.c,$(O)/tests/bench_%,$(BENCH_SRCS))

$(O)/tests/bench_%: tests/bench/%.c
	$(call msg,CCLD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

all: $(BENCH_BINS)

.PHONY: bench
bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)O=$(O) tests/bench/run.sh

# ---- fuzzing: clang's libFuzzer; a developer's tool, not in make check ----
# make fuzz [FUZZ_SECONDS=60]: each tests/fuzz/fuzz_NAME.c is built with
# ASan and UBSan against common/ and the schemas, then run FUZZ_SECONDS on
# its corpus in build-fuzz/corpus/NAME (kept between runs).  A crash
# leaves its input in build-fuzz/ and fails the target.
FUZZ_O       := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_NAMES   := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CFLAGS  := -O1 -g -std=gnu11 -D_GNU_SOURCE -I. -I$(O) $(PKG_CFLAGS) \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

.PHONY: fuzz
fuzz: $(PROTO_C) $(PROTO_H)
	@command -v clang >/dev/null || \
		{ echo "make fuzz: needs clang (apt-get install clang)" >&2; exit 1; }
	@mkdir -p $(FUZZ_O)
	$(Q)set -e; for n in $(FUZZ_NAMES); do \
		printf '  %-7s %s\n' FUZZ $$n; \
		clang $(FUZZ_CFLAGS) -o $(FUZZ_O)/$$n tests/fuzz/$$n.c \
			$(COMMON_SRCS) $(PROTO_C) $(LDLIBS); \
		mkdir -p $(FUZZ_O)/corpus/$$n; \
		(cd $(FUZZ_O) && ./$$n -max_total_time=$(FUZZ_SECONDS) \
			-max_len=4096 -print_final_stats=1 corpus/$$n \
			>$$n.log 2>&1) || \
			{ tail -n 40 $(FUZZ_O)/$$n.log; exit 1; }; \
		grep '^stat::number_of_executed_units' $(FUZZ_O)/$$n.log; \
	done
