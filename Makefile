# Flashlight: one Makefile. `make`, `make test`, `make demo`, `make bench`,
# `make dist` (what a GPU machine needs), `make install PREFIX=...`.

CC       ?= cc
PREFIX   ?= /usr/local
LUA_INC  ?= /usr/include/lua5.4
LUA_A    ?= $(firstword $(wildcard /usr/lib/*/liblua5.4.a /usr/lib/liblua5.4.a))
CFLAGS   ?= -O2 -g
# Flags the code needs, kept apart so that `make CFLAGS=...` (luarocks) adds to them.
FL_FLAGS := -std=c11 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -fPIC -Icore -Ilua -I$(LUA_INC)
LDLIBS   += -ldl -lm

B := build
CORE_SRC := $(wildcard core/*.c)
BIND_SRC := $(filter-out lua/flua.c lua/bin2c.c,$(wildcard lua/*.c))
FRONT    := $(wildcard lua/flashlight/*.lua)
CORE_OBJ := $(CORE_SRC:%.c=$(B)/obj/%.o)
BIND_OBJ := $(BIND_SRC:%.c=$(B)/obj/%.o) $(B)/obj/gen/l_sources.o
TEST_SRC := $(wildcard spec/core/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(B)/obj/%.o)
HEADERS  := $(wildcard core/*.h lua/*.h)

.PHONY: all deps deps-build test demo bench dist dist-builds install module install-module clean
all: $(B)/flua $(B)/flashlight.so $(B)/libflashlight.a $(B)/embed

deps-build:
	@sh scripts/deps.sh build

deps:
	@sh scripts/deps.sh test

$(B)/obj/%.o: %.c $(HEADERS) | deps-build
	@mkdir -p $(dir $@)
	$(CC) $(FL_FLAGS) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# The Lua front end is compiled into the library as data.
$(B)/bin2c: lua/bin2c.c | deps-build
	@mkdir -p $(dir $@)
	$(CC) $(FL_FLAGS) $(CFLAGS) $< -o $@

$(B)/gen/l_sources.c: $(FRONT) $(B)/bin2c
	@mkdir -p $(dir $@)
	$(B)/bin2c $(foreach f,$(FRONT),$(basename $(notdir $(f)))=$(f)) > $@.tmp && mv $@.tmp $@

$(B)/obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(FL_FLAGS) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(B)/libflashlight.a: $(CORE_OBJ) $(BIND_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/flashlight.so: $(CORE_OBJ) $(BIND_OBJ)
	$(CC) -shared $(LDFLAGS) $^ $(LDLIBS) -o $@

# Lua linked in; -E exports its API so that C modules (lfs, busted's) load.
$(B)/flua: $(B)/obj/lua/flua.o $(B)/libflashlight.a
	$(CC) $(LDFLAGS) -Wl,-E $^ $(LUA_A) $(LDLIBS) -o $@

$(B)/embed: $(B)/obj/examples/embed/embed.o $(B)/libflashlight.a
	$(CC) $(LDFLAGS) $^ $(LUA_A) $(LDLIBS) -o $@

$(B)/test_core: $(TEST_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(B)/obj/spec/core/%.o: CPPFLAGS += -Ispec/core

# For luarocks (flashlight-scm-1.rockspec): the module alone.
module: $(B)/flashlight.so

install-module: module
	install -d $(INST_LIBDIR)
	install -m 755 $(B)/flashlight.so $(INST_LIBDIR)/flashlight.so

test: deps all $(B)/test_core
	@sh spec/run.sh

demo: all
	@$(B)/flua examples/demo.lua

bench: all
	@$(B)/flua bench/bench.lua

# A self-contained folder for a machine with a GPU and no Lua: flua, the
# specs' Lua libraries (busted and its C modules) and a runner.
dist: all $(B)/test_core
	@sh scripts/dist.sh $(B) dist

# dist/ plus builds with compile-time knobs, for bench/builds.sh:
#   make dist-builds BUILDS="s3=-DFL_WS_STAGES=3 pm=-DFL_WS_PIPE_MASK_REGS=-100"
dist-builds: dist
	@sh scripts/dist_builds.sh dist $(BUILDS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/lua/5.4 \
	  $(DESTDIR)$(PREFIX)/include/flashlight
	install -m 755 $(B)/flua $(DESTDIR)$(PREFIX)/bin/flua
	install -m 755 $(B)/flashlight.so $(DESTDIR)$(PREFIX)/lib/lua/5.4/flashlight.so
	install -m 644 $(B)/libflashlight.a $(DESTDIR)$(PREFIX)/lib/libflashlight.a
	install -m 644 core/*.h lua/flashlight.h $(DESTDIR)$(PREFIX)/include/flashlight/

clean:
	rm -rf $(B) dist
