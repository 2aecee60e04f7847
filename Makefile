# clicktocall: build the C core for one Lua version, test, install.
#   make                      build for Lua 5.4
#   make LUA_VERSION=5.1|5.2|5.3|luajit
#   make check                every test (what CI runs); ends with "N passed, M failed"
#   make demo                 the quick start against the bundled simulator
#   make install [PREFIX=/usr/local] [DESTDIR=]
# Variable names follow LuaRocks' (LUA_INCDIR, LIBFLAG, LUA_LIBDIR, LUA_SHAREDIR).


LUA_VERSION  ?= 5.4
PREFIX       ?= /usr/local

ifeq ($(LUA_VERSION),luajit)
LUA_PC       ?= luajit
LUA_ABI      := 5.1
LUA          ?= luajit
else
LUA_PC       ?= lua$(LUA_VERSION)
LUA_ABI      := $(LUA_VERSION)
LUA          ?= lua$(LUA_VERSION)
endif

# Every pkg-config read below is a recursive (=, ?=) variable, expanded only in a
# recipe: on a fresh machine the headers exist only after the bootstrap (an
# order-only prerequisite of every object) has run, not when make parses this file.
LUA_INCDIR   ?= $(shell pkg-config --variable=includedir $(LUA_PC) 2>/dev/null)
LUA_CFLAGS   ?= $(shell pkg-config --cflags $(LUA_PC) 2>/dev/null)
CURL_CFLAGS  ?= $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS    ?= $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
LUA_LIBDIR   ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_ABI)

CC           ?= cc
OPT          ?= -O2 -g
WARN         := -Wall -Wextra -Wshadow -Werror
CFLAGS       ?= $(OPT)
ALL_CFLAGS    = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -pthread -fvisibility=hidden $(WARN) \
                $(LUA_CFLAGS) $(CURL_CFLAGS) $(CFLAGS)
LIBFLAG      ?= -shared
# never link liblua: the host (lua, luajit, nginx) provides its symbols

BUILD        ?= build/$(LUA_VERSION)
SRCS         := $(wildcard csrc/*.c)
OBJS         := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRCS))
CORE         := $(BUILD)/clicktocall/core.so
LUA_FILES    := $(shell find lua -name '*.lua' | sort)

.PHONY: all bootstrap check test lint asan demo bench install uninstall clean parsers-test crypto-test fuzz

all: $(CORE)

$(BUILD)/obj/%.o: csrc/%.c $(wildcard csrc/*.h) | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(CURL_LIBS) -lm -pthread

# Installs the Debian packages the project needs when run as root; otherwise
# prints the one apt-get command to run. `deps` is the same, quiet, and is the
# one target every build and run depends on, so one make run calls it once
# (even with -j) and before anything reads pkg-config or runs lua.
bootstrap:
	@scripts/bootstrap

.PHONY: deps
deps:
	@scripts/bootstrap --quiet

# Every test: lint, the C parser tests, the specs on Lua 5.4, the specs under
# ASan/UBSan, the other Lua versions' builds, LuaJIT specs, the rockspec.
check: | deps
	@scripts/check

test: $(CORE)
	busted --lua=$(LUA) --cpath='./$(BUILD)/?.so' $(BUSTED_ARGS)

lint: | deps
	luacheck -q lua spec examples bench sim scripts bin/clicktocall
	cppcheck -q --error-exitcode=1 --enable=warning,style,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem --suppress=toomanyconfigs --std=c99 $(LUA_CFLAGS) csrc

asan:
	@scripts/check asan

parsers-test: | deps
	@mkdir -p build/test
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) -g -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
	  -fno-omit-frame-pointer -Icsrc csrc/test/test_parsers.c csrc/phone.c csrc/timefmt.c \
	  csrc/test/oracle/jsonscan.c -o build/test/test_parsers
	build/test/test_parsers

# SHA-256 (FIPS 180-4) and base64 (RFC 4648) known answers; base64.c holds a
# Lua binding too, hence liblua for this test program only.
crypto-test: | deps
	@mkdir -p build/test
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) -g -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
	  -fno-omit-frame-pointer $(LUA_CFLAGS) -Icsrc csrc/test/test_crypto.c csrc/sha256.c \
	  csrc/base64.c -o build/test/test_crypto $$(pkg-config --libs $(LUA_PC))
	build/test/test_crypto

# Each libFuzzer harness (csrc/test/fuzz/) replays its corpus and regressions,
# then fuzzes for its share of FUZZ_SECONDS; a crash fails and is kept in
# csrc/test/corpus/<harness>/regressions/ to commit.
FUZZ_SECONDS ?= 300
fuzz: | deps
	@scripts/fuzz $(FUZZ_SECONDS)

demo: $(CORE) | deps
	@scripts/demo

bench: $(CORE) | deps
	@bench/run

install: $(CORE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/clicktocall $(DESTDIR)$(LUA_SHAREDIR)/clicktocall/transport
	install -m 0755 $(CORE) $(DESTDIR)$(LUA_LIBDIR)/clicktocall/core.so
	install -m 0644 lua/clicktocall.lua $(DESTDIR)$(LUA_SHAREDIR)/clicktocall.lua
	for f in $(filter lua/clicktocall/%,$(LUA_FILES)); do \
	  install -D -m 0644 $$f $(DESTDIR)$(LUA_SHAREDIR)/$${f#lua/}; done
	install -d $(DESTDIR)$(PREFIX)/bin
	sed '1s|.*|#!/usr/bin/env $(LUA)|' bin/clicktocall > $(DESTDIR)$(PREFIX)/bin/clicktocall
	chmod 0755 $(DESTDIR)$(PREFIX)/bin/clicktocall

uninstall:
	rm -f $(DESTDIR)$(LUA_LIBDIR)/clicktocall/core.so $(DESTDIR)$(LUA_SHAREDIR)/clicktocall.lua \
	  $(DESTDIR)$(PREFIX)/bin/clicktocall
	rm -rf $(DESTDIR)$(LUA_SHAREDIR)/clicktocall

clean:
	rm -rf build
