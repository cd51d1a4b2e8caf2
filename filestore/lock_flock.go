//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockKind names the locking of this platform, for errors and the tests.
const lockKind = "flock"

// locker takes an exclusive advisory lock (flock(2)) on the lock file,
// path + ".lock", for each read-modify-write of the store's file. The
// kernel drops the lock of a process that dies, so a crash never leaves
// the store locked. The lock file stays: removing it could let two
// processes lock two different files.
type locker struct {
	f  *os.File
	fd int
}

// openLock opens (creating it if needed) the lock file of path.
func openLock(path string) (*locker, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &locker{f: f, fd: int(f.Fd())}, nil
}

// lock waits for the lock until ctx ends and returns its release.
func (l *locker) lock(ctx context.Context) (unlock func(), err error) {
	delay := 100 * time.Microsecond
	for {
		err := syscall.Flock(l.fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(l.fd, syscall.LOCK_UN) }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR) {
			return nil, fmt.Errorf("filestore: flock %s: %w", l.f.Name(), err)
		}
		if err := pause(ctx, delay); err != nil {
			return nil, fmt.Errorf("filestore: waiting for the lock on %s: %w", l.f.Name(), err)
		}
		delay = min(2*delay, 5*time.Millisecond)
	}
}

// close closes the lock file.
func (l *locker) close() error { return l.f.Close() }
