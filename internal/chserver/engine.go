package chserver

import (
	"fmt"
	"runtime"

	"github.com/ebitengine/purego"
)

// engine is the part of the chDB C API that Serve uses, bound with purego so
// the binary needs neither cgo nor a C toolchain.
type engine struct {
	version           func() string
	setSignalHandlers func(enabled int32)
	queryCmdline      func(argc int32, argv **byte) uintptr
	resultError       func(res uintptr) string
	destroyResult     func(res uintptr)
}

func openEngine(path string) (*engine, error) {
	// RTLD_LOCAL: nothing else in the process needs the library's symbols.
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("chserver: load engine library %s: %w", path, err)
	}
	var e engine
	for name, fptr := range map[string]any{
		"chdb_version":                     &e.version,
		"chdb_set_signal_handlers_enabled": &e.setSignalHandlers,
		"chdb_query_cmdline":               &e.queryCmdline,
		"chdb_result_error":                &e.resultError,
		"chdb_destroy_query_result":        &e.destroyResult,
	} {
		// RegisterLibFunc panics on a missing symbol; look it up first so a
		// wrong library is an error, not a crash.
		if _, err := purego.Dlsym(h, name); err != nil {
			return nil, fmt.Errorf("chserver: engine library %s lacks %s: %w", path, name, err)
		}
		purego.RegisterLibFunc(fptr, h, name)
	}
	return &e, nil
}

// run calls chdb_query_cmdline, which behaves like `clickhouse local` with
// args and returns only when its queries end. It returns the engine's error
// text, which is empty for most failures: those go to stderr.
func (e *engine) run(args []string) string {
	// argv lives in Go memory for the whole call. Go's collector does not
	// move heap objects, and KeepAlive stops it from freeing them early.
	bufs := make([][]byte, len(args))
	argv := make([]*byte, len(args)+1)
	for i, a := range args {
		bufs[i] = append([]byte(a), 0)
		argv[i] = &bufs[i][0]
	}
	res := e.queryCmdline(int32(len(args)), &argv[0])
	runtime.KeepAlive(bufs)
	runtime.KeepAlive(argv)
	if res == 0 {
		return "chdb_query_cmdline returned no result"
	}
	msg := e.resultError(res)
	e.destroyResult(res)
	return msg
}
