package chserver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// capSysNice is CAP_SYS_NICE's bit in a Linux capability set
// (linux/capability.h).
const capSysNice = 23

// MergesBelowInserts reports whether the server process pid can run its
// merges at the lower priority its config asks for
// (os_threads_nice_value_merge_mutate, configHead). The engine applies the
// setting only when CAP_SYS_NICE is among its effective capabilities, and
// then only while a thread runs a merge; without the capability, merges
// compete with inserts and queries as equals, and under a steady load they
// can hold up ingest's batches (docs/PERFORMANCE-HISTORY.md, "Merges below
// inserts, and the merges left after a run").
func MergesBelowInserts(pid int) (bool, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false, fmt.Errorf("chserver: capabilities of pid %d: %w", pid, err)
	}
	return effectiveCap(status, capSysNice)
}

// effectiveCap reports whether capability bit is set in the CapEff line of
// a /proc/PID/status file.
func effectiveCap(status []byte, bit uint) (bool, error) {
	for line := range bytes.Lines(status) {
		v, ok := bytes.CutPrefix(line, []byte("CapEff:"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		caps, err := strconv.ParseUint(string(v), 16, 64)
		if err != nil {
			return false, fmt.Errorf("chserver: CapEff %q in /proc status: %w", v, err)
		}
		return caps&(1<<bit) != 0, nil
	}
	return false, errors.New("chserver: no CapEff line in /proc status")
}

// mergePriorityWarning is logged when the server starts without
// CAP_SYS_NICE.
const mergePriorityWarning = "merges run at the same priority as inserts and queries: " +
	"the process lacks CAP_SYS_NICE, which the engine needs to run them at nice 10; " +
	"under a steady load they can delay ingest's batches (root outside a container holds it; " +
	"a container needs it added, as docker run --cap-add SYS_NICE does)"
