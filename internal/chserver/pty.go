package chserver

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ttyStdin makes this process's standard input a pseudo-terminal and
// returns its controller side.
//
// Why: clickhouse-local installs an error handler that terminates the whole
// process on any exception escaping a connection handler unless it runs
// interactively, which it only does with a terminal on standard input. A
// client that dies with data unread (its socket reset) then kills the
// server (ClickHouse issue 115666, fixed after the 26.7 engine we load).
// With a terminal and --interactive, the engine logs such errors and goes on
// serving, as clickhouse-server does.
func ttyStdin() (*os.File, error) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("chserver: open /dev/ptmx: %w", err)
	}
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("chserver: unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("chserver: pty number: %w", err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("chserver: open pty: %w", err)
	}
	defer pts.Close()
	if err := unix.Dup3(int(pts.Fd()), 0, 0); err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("chserver: pty as stdin: %w", err)
	}
	return ptmx, nil
}
