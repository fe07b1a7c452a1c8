/* flua: a standalone Lua 5.4 interpreter with the flashlight module built in.
 * Command-line behaviour follows the stock lua5.4 program:
 *   flua [options] [script [args]]
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "flashlight.h"

#define FLUA_NAME "flua"
#define INIT_VAR "LUA_INIT"
#define INIT_VAR_VERSIONED INIT_VAR "_" LUA_VERSION_MAJOR "_" LUA_VERSION_MINOR
#define DEFAULT_PROMPT "> "
#define DEFAULT_PROMPT2 ">> "
#define EOF_MARK "<eof>"

/* Bits returned by collect_args. */
enum {
  ARG_ERROR = 1,
  ARG_INTERACTIVE = 2, /* -i */
  ARG_VERSION = 4,     /* -v (also implied by -i) */
  ARG_EXEC = 8,        /* -e */
  ARG_NOENV = 16       /* -E */
};

/* Prefix for error messages; NULL inside the REPL, as in lua.c. */
static const char *progname = FLUA_NAME;

/* The state the SIGINT handler must interrupt. */
static lua_State *signal_state = NULL;

/* ---------------------------------------------------------------- messages */

static void print_message(const char *prefix, const char *msg) {
  if (prefix != NULL)
    fprintf(stderr, "%s: ", prefix);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* Prints the error on top of the stack (if status is an error) and pops it. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    print_message(progname, msg != NULL ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
  return status;
}

static void print_version(void) {
  fputs("Flashlight " FLUA_NAME ", " LUA_COPYRIGHT "\n", stdout);
  fflush(stdout);
}

static void print_usage(const char *badoption) {
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "%s: '%s' needs argument\n", progname, badoption);
  else
    fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n",
          progname);
  fflush(stderr);
}

/* ------------------------------------------------------- protected calls */

/* Hook installed by the SIGINT handler: raising the error here, rather than
 * in the signal handler, keeps the Lua state consistent. */
static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void set_sigint(void (*handler)(int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

static void on_sigint(int sig) {
  int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  (void)sig;
  set_sigint(SIG_DFL); /* a second Ctrl-C kills the process */
  lua_sethook(signal_state, interrupt_hook, mask, 1);
}

static int message_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the function below narg arguments with a traceback handler and
 * Ctrl-C interruption enabled. */
static int docall(lua_State *L, int narg, int nres) {
  int status;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, message_handler);
  lua_insert(L, base);
  signal_state = L;
  set_sigint(on_sigint);
  status = lua_pcall(L, narg, nres, base);
  set_sigint(SIG_DFL);
  lua_remove(L, base);
  return status;
}

static int run_chunk(lua_State *L, int load_status) {
  if (load_status == LUA_OK)
    load_status = docall(L, 0, 0);
  return report(L, load_status);
}

static int run_string(lua_State *L, const char *code, const char *chunkname) {
  return run_chunk(L, luaL_loadbuffer(L, code, strlen(code), chunkname));
}

/* A NULL filename runs standard input. */
static int run_file(lua_State *L, const char *filename) {
  return run_chunk(L, luaL_loadfile(L, filename));
}

/* Handles "-l spec": spec is "mod" or "global=mod". Without '=', a suffix
 * starting at '-' is dropped from the global name ("mod-1.0" -> "mod"). */
static int require_library(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  const char *modname = eq != NULL ? eq + 1 : spec;
  size_t globlen = eq != NULL ? (size_t)(eq - spec) : strcspn(spec, "-");
  int status;
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  status = docall(L, 1, 1);
  if (status == LUA_OK) {
    lua_pushlstring(L, spec, globlen);
    lua_insert(L, -2);
    lua_setglobal(L, lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  return report(L, status);
}

/* ------------------------------------------------------------- arguments */

static int flag_for_option(char option) {
  switch (option) {
  case 'E':
    return ARG_NOENV;
  case 'i': /* -i implies -v */
    return ARG_INTERACTIVE | ARG_VERSION;
  case 'v':
    return ARG_VERSION;
  default: /* -W acts later, in run_option_args */
    return 0;
  }
}

/* Scans the options. Returns ARG_* bits; *script receives the index of the
 * script name (0 if none) or, on ARG_ERROR, the index of the bad option. */
static int collect_args(char **argv, int *script) {
  int flags = 0;
  int i;
  *script = 0;
  if (argv[0] == NULL)
    return 0;
  for (i = 1; argv[i] != NULL; i++) {
    const char *opt = argv[i];
    *script = i;
    if (opt[0] != '-')
      return flags;
    switch (opt[1]) {
    case '-':
      if (opt[2] != '\0')
        return ARG_ERROR;
      *script = argv[i + 1] != NULL ? i + 1 : 0;
      return flags;
    case '\0': /* "-" is the script name for stdin */
      return flags;
    case 'E':
    case 'W':
    case 'i':
    case 'v':
      if (opt[2] != '\0')
        return ARG_ERROR;
      flags |= flag_for_option(opt[1]);
      break;
    case 'e':
    case 'l':
      if (opt[1] == 'e')
        flags |= ARG_EXEC;
      if (opt[2] == '\0') { /* the argument is the next word */
        i++;
        if (argv[i] == NULL || argv[i][0] == '-')
          return ARG_ERROR;
      }
      break;
    default:
      return ARG_ERROR;
    }
  }
  *script = 0;
  return flags;
}

/* Builds the global 'arg': arg[0] is the script, negative indices hold the
 * interpreter and its options, positive ones the script arguments. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  int i;
  int npositive = argc - (script + 1);
  lua_createtable(L, npositive > 0 ? npositive : 0, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* Runs -e, -l and -W in command-line order, up to argv[limit]. */
static int run_option_args(lua_State *L, char **argv, int limit) {
  int i;
  for (i = 1; i < limit; i++) {
    char option = argv[i][1];
    if (option == 'e' || option == 'l') {
      const char *value = argv[i][2] != '\0' ? argv[i] + 2 : argv[++i];
      int status = option == 'e'
                       ? run_string(L, value, "=(command line)")
                       : require_library(L, value);
      if (status != LUA_OK)
        return 0;
    } else if (option == 'W') {
      lua_warning(L, "@on", 0);
    }
  }
  return 1;
}

/* Pushes arg[1..#arg] (read now, so -e code may have changed 'arg'). */
static int push_script_args(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

/* A script named "-" means stdin, unless it came after "--". */
static int run_script(lua_State *L, char **argv, int script) {
  const char *fname = argv[script];
  int status;
  if (strcmp(fname, "-") == 0 && strcmp(argv[script - 1], "--") != 0)
    fname = NULL;
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = push_script_args(L);
    status = docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

/* LUA_INIT_5_4 (or else LUA_INIT): "@file" runs a file, anything else is code. */
static int run_lua_init(lua_State *L) {
  const char *chunkname = "=" INIT_VAR_VERSIONED;
  const char *init = getenv(chunkname + 1);
  if (init == NULL) {
    chunkname = "=" INIT_VAR;
    init = getenv(chunkname + 1);
  }
  if (init == NULL)
    return LUA_OK;
  if (init[0] == '@')
    return run_file(L, init + 1);
  return run_string(L, init, chunkname);
}

/* ------------------------------------------------------------------ REPL */

/* Pushes one line of standard input (any length) without its newline.
 * Returns 0, pushing nothing, at end of input. */
static int push_input_line(lua_State *L) {
  char chunk[512];
  luaL_Buffer b;
  int got_any = 0;
  luaL_buffinit(L, &b);
  while (fgets(chunk, sizeof chunk, stdin) != NULL) {
    size_t len = strlen(chunk);
    got_any = 1;
    if (len > 0 && chunk[len - 1] == '\n') {
      luaL_addlstring(&b, chunk, len - 1);
      break;
    }
    luaL_addlstring(&b, chunk, len);
  }
  luaL_pushresult(&b);
  if (!got_any) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static void show_prompt(lua_State *L, int firstline) {
  int top = lua_gettop(L);
  if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL)
    fputs(firstline ? DEFAULT_PROMPT : DEFAULT_PROMPT2, stdout);
  else
    fputs(luaL_tolstring(L, -1, NULL), stdout);
  fflush(stdout);
  lua_settop(L, top);
}

/* Prompts and pushes a line; on the first line "=expr" becomes "return expr". */
static int read_line(lua_State *L, int firstline) {
  show_prompt(L, firstline);
  if (!push_input_line(L))
    return 0;
  if (firstline && lua_tostring(L, -1)[0] == '=') {
    lua_pushfstring(L, "return %s", lua_tostring(L, -1) + 1);
    lua_remove(L, -2);
  }
  return 1;
}

/* Is the error on top a syntax error caused only by input ending early? */
static int is_incomplete(lua_State *L, int status) {
  size_t len;
  const char *msg;
  size_t marklen = sizeof(EOF_MARK) - 1;
  if (status != LUA_ERRSYNTAX)
    return 0;
  msg = lua_tolstring(L, -1, &len);
  return len >= marklen && strcmp(msg + len - marklen, EOF_MARK) == 0;
}

/* Tries the line at index 1 as "return <line>;", so expressions print. */
static int load_as_expression(lua_State *L) {
  const char *code = lua_pushfstring(L, "return %s;", lua_tostring(L, 1));
  int status = luaL_loadbuffer(L, code, strlen(code), "=stdin");
  lua_remove(L, -2);
  if (status != LUA_OK)
    lua_pop(L, 1);
  return status;
}

/* Loads the line at index 1 as a statement, reading continuation lines while
 * the code is incomplete. At end of input the syntax error is kept. */
static int load_as_statement(lua_State *L) {
  for (;;) {
    size_t len;
    const char *code = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, code, len, "=stdin");
    if (!is_incomplete(L, status))
      return status;
    if (!read_line(L, 0))
      return status;
    lua_remove(L, -2); /* the syntax error */
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3); /* index 1 becomes: code .. "\n" .. new line */
  }
}

/* Leaves a compiled chunk or an error message on an otherwise empty stack.
 * Returns -1 at end of input. */
static int load_line(lua_State *L) {
  int status;
  lua_settop(L, 0);
  if (!read_line(L, 1))
    return -1;
  status = load_as_expression(L);
  if (status != LUA_OK)
    status = load_as_statement(L);
  lua_remove(L, 1);
  return status;
}

static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0)
    return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  lua_getglobal(L, "print");
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK)
    print_message(progname, lua_pushfstring(L, "error calling 'print' (%s)",
                                            lua_tostring(L, -1)));
}

static void run_repl(lua_State *L) {
  int status;
  const char *saved_progname = progname;
  progname = NULL;
  while ((status = load_line(L)) != -1) {
    if (status == LUA_OK)
      status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      print_results(L);
    else
      report(L, status);
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  progname = saved_progname;
}

/* ------------------------------------------------------------------ main */

static void preload_flashlight(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_flashlight);
  lua_setfield(L, -2, "flashlight");
  lua_pop(L, 1);
}

/* With neither a script nor -e/-v/-i: a REPL on a terminal, else run stdin. */
static void run_default(lua_State *L) {
  if (isatty(0)) {
    print_version();
    run_repl(L);
  } else {
    run_file(L, NULL);
  }
}

/* Runs in protected mode; returns true on success. */
static int protected_main(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script;
  int flags = collect_args(argv, &script);
  luaL_checkversion(L);
  if (flags == ARG_ERROR) {
    print_usage(argv[script]);
    return 0;
  }
  if (flags & ARG_VERSION)
    print_version();
  if (flags & ARG_NOENV) { /* tells the libraries to ignore LUA_PATH etc. */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  preload_flashlight(L);
  create_arg_table(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(flags & ARG_NOENV) && run_lua_init(L) != LUA_OK)
    return 0;
  if (!run_option_args(L, argv, script > 0 ? script : argc))
    return 0;
  if (script > 0 && run_script(L, argv, script) != LUA_OK)
    return 0;
  if (flags & ARG_INTERACTIVE)
    run_repl(L);
  else if (script == 0 && !(flags & (ARG_EXEC | ARG_VERSION)))
    run_default(L);
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  int status, ok;
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    print_message(FLUA_NAME, "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP); /* no collections while building the state */
  lua_pushcfunction(L, protected_main);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  ok = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  return (ok && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
