# clicktocall: build the C core for one Lua version, test, install.
#   make                      build for Lua 5.4 (needs a C compiler, pkg-config, the Lua and libcurl headers)
#   make LUA_VERSION=5.1|5.2|5.3|luajit
#   make install [PREFIX=/usr/local] [DESTDIR=]   the library; the command too when LUA_VERSION is 5.4
#   make install-cli          the command, for LUA_VERSION's interpreter
#   make uninstall            what install put there (the command only if it runs on LUA_VERSION)
#   make bootstrap            as root: apt-get the Debian packages the tests, the demo and the benchmarks need
#   make check                bootstrap, then every test (what CI runs); ends with "N passed, M failed"
#   make demo                 bootstrap, then the quick start against the bundled simulator
# make and make install install no package and start or stop no service.
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
# recipe: `make demo` and `make check` build after their bootstrap, when the headers
# exist, not when make parses this file.
LUA_INCDIR   ?= $(shell pkg-config --variable=includedir $(LUA_PC) 2>/dev/null)
LUA_CFLAGS   ?= $(shell pkg-config --cflags $(LUA_PC) 2>/dev/null)
CURL_CFLAGS  ?= $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS    ?= $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
LUA_LIBDIR   ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_ABI)
MANDIR       ?= $(PREFIX)/share/man
BASHCOMPDIR  ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR   ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR  ?= $(PREFIX)/share/fish/vendor_completions.d

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

.PHONY: all bootstrap check test lint asan demo bench install install-lib install-cli uninstall clean \
        parsers-test crypto-test fuzz

all: $(CORE)

$(BUILD)/obj/%.o: csrc/%.c $(wildcard csrc/*.h) | buildenv
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(CURL_LIBS) -lm -pthread

# What building needs, checked before the first object: each missing tool or header is
# named with its Debian package. It installs nothing.
.PHONY: buildenv
buildenv:
	@CC='$(CC)' LUA_VERSION='$(LUA_VERSION)' LUA_PC='$(LUA_PC)' LUA_CFLAGS='$(LUA_CFLAGS)' \
	  CURL_CFLAGS='$(CURL_CFLAGS)' LUA_CFLAGS_FROM=$(if $(filter file,$(origin LUA_CFLAGS)),pkg-config) \
	  CURL_CFLAGS_FROM=$(if $(filter file,$(origin CURL_CFLAGS)),pkg-config) scripts/buildcheck

# Installs the Debian packages the tests, the demo and the benchmarks need when run
# as root; otherwise prints the one apt-get command to run. Only this target, `demo`
# and `check` install anything. `deps` installs nothing: it names what the developer
# targets below lack and fails.
bootstrap:
	@scripts/bootstrap

.PHONY: deps
deps:
	@scripts/bootstrap --check

# Every test: lint, the C parser tests, the specs on Lua 5.4, the specs under
# ASan/UBSan, the other Lua versions' builds, LuaJIT specs, the rockspec.
# scripts/check bootstraps first.
check:
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

# SHA-256 (FIPS 180-4), base64 (RFC 4648), HMAC-SHA256 (RFC 4231) and SigV4 (AWS's examples)
# known answers; base64.c holds a
# Lua binding too, hence liblua for this test program only.
crypto-test: | deps
	@mkdir -p build/test
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) -g -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
	  -fno-omit-frame-pointer $(LUA_CFLAGS) -Icsrc csrc/test/test_crypto.c csrc/sha256.c \
	  csrc/base64.c csrc/sigv4.c csrc/buf.c -o build/test/test_crypto $$(pkg-config --libs $(LUA_PC))
	build/test/test_crypto

# Each libFuzzer harness (csrc/test/fuzz/) replays its corpus and regressions,
# then fuzzes for its share of FUZZ_SECONDS; a crash fails and is kept in
# csrc/test/corpus/<harness>/regressions/ to commit.
FUZZ_SECONDS ?= 300
fuzz: | deps
	@scripts/fuzz $(FUZZ_SECONDS)

# the bootstrap first, then the build: on a fresh machine the headers come with it
demo:
	@scripts/bootstrap --quiet
	@$(MAKE) --no-print-directory all
	@scripts/demo

bench: $(CORE) | deps
	@bench/run

# The command runs on one interpreter: `make install` installs it for the default Lua
# (5.4) only, so `make install LUA_VERSION=luajit` (OpenResty's core) leaves an
# installed command as it is; `make install-cli LUA_VERSION=...` installs it for another.
ifeq ($(LUA_VERSION),5.4)
install: install-cli
else
install: install-lib
	@echo "make install: the clicktocall command is left as it is (it runs on Lua 5.4; \
	\`make install-cli LUA_VERSION=$(LUA_VERSION)\` installs it for $(LUA))"
endif

install-lib: $(CORE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/clicktocall $(DESTDIR)$(LUA_SHAREDIR)/clicktocall/transport
	install -m 0755 $(CORE) $(DESTDIR)$(LUA_LIBDIR)/clicktocall/core.so
	install -m 0644 lua/clicktocall.lua $(DESTDIR)$(LUA_SHAREDIR)/clicktocall.lua
	for f in $(filter lua/clicktocall/%,$(LUA_FILES)); do \
	  install -D -m 0644 $$f $(DESTDIR)$(LUA_SHAREDIR)/$${f#lua/}; done

# The shebang names the interpreter; the INSTALLED line the directories the modules went
# to, which the command adds to its package.path/cpath (so any PREFIX works).
INSTALLED_PATH  = $(LUA_SHAREDIR)/?.lua;$(LUA_SHAREDIR)/?/init.lua
INSTALLED_CPATH = $(LUA_LIBDIR)/?.so
install-cli: install-lib
	install -d $(DESTDIR)$(PREFIX)/bin
	sed -e '1s|.*|#!/usr/bin/env $(LUA)|' \
	  -e 's|^local INSTALLED = nil$$|local INSTALLED = { path = [[$(INSTALLED_PATH)]], cpath = [[$(INSTALLED_CPATH)]] }|' \
	  bin/clicktocall > $(DESTDIR)$(PREFIX)/bin/clicktocall
	chmod 0755 $(DESTDIR)$(PREFIX)/bin/clicktocall
	@# the man page and the completion scripts, generated from the command's own help
	@# (needs lua-argparse, as the command does; without it they are left out, said so)
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	if $(LUA) scripts/manpage.lua > $(BUILD)/clicktocall.1 && \
	   $(LUA) bin/clicktocall completion bash > $(BUILD)/clicktocall.bash && \
	   $(LUA) bin/clicktocall completion zsh > $(BUILD)/clicktocall.zsh && \
	   $(LUA) bin/clicktocall completion fish > $(BUILD)/clicktocall.fish; then \
	  install -m 0644 $(BUILD)/clicktocall.1 $(DESTDIR)$(MANDIR)/man1/clicktocall.1 && \
	  install -m 0644 $(BUILD)/clicktocall.bash $(DESTDIR)$(BASHCOMPDIR)/clicktocall && \
	  install -m 0644 $(BUILD)/clicktocall.zsh $(DESTDIR)$(ZSHCOMPDIR)/_clicktocall && \
	  install -m 0644 $(BUILD)/clicktocall.fish $(DESTDIR)$(FISHCOMPDIR)/clicktocall.fish; \
	else echo "make install: the man page and shell completions were not installed: $(LUA) could not" \
	  "run bin/clicktocall (is lua-argparse installed?)" >&2; fi

uninstall:
	rm -f $(DESTDIR)$(LUA_LIBDIR)/clicktocall/core.so $(DESTDIR)$(LUA_SHAREDIR)/clicktocall.lua
	rm -f $(DESTDIR)$(MANDIR)/man1/clicktocall.1 $(DESTDIR)$(BASHCOMPDIR)/clicktocall \
	  $(DESTDIR)$(ZSHCOMPDIR)/_clicktocall $(DESTDIR)$(FISHCOMPDIR)/clicktocall.fish
	rm -rf $(DESTDIR)$(LUA_SHAREDIR)/clicktocall
	rmdir $(DESTDIR)$(LUA_LIBDIR)/clicktocall 2>/dev/null || true
	@bin='$(DESTDIR)$(PREFIX)/bin/clicktocall'; \
	if [ -f "$$bin" ] && [ "$$(head -1 "$$bin")" = '#!/usr/bin/env $(LUA)' ]; then \
	  echo "rm -f $$bin"; rm -f "$$bin"; fi

clean:
	rm -rf build
