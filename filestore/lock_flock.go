//go:build (darwin || dragonfly || freebsd || linux || netbsd || openbsd) && !filestore_lockfile

package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockKind names the locking of this platform, for errors and the tests.
const lockKind = "flock"

// locker takes an exclusive advisory lock (flock(2)) on the lock file,
// path + ".lock", for each read-modify-write of the store's file. The
// kernel drops the lock of a process that dies, so a crash never leaves
// the store locked. The lock file stays: removing it could let two
// processes lock two different files.
type locker struct {
	name string
}

// openLock creates the lock file of path if needed.
func openLock(path string) (*locker, error) {
	l := &locker{name: path + ".lock"}
	f, err := os.OpenFile(l.name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return l, f.Close()
}

// lock waits for the lock until ctx ends and returns its release. Each
// lock has its own descriptor, closed on release: a wait abandoned when
// ctx ends goes on in a goroutine that releases the lock as soon as it has
// it, and cannot release anyone else's.
func (l *locker) lock(ctx context.Context) (unlock func(), err error) {
	f, err := os.OpenFile(l.name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("filestore: lock file: %w", err)
	}
	fd := int(f.Fd())
	release := func() { _ = f.Close() } // closing the descriptor drops the lock
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return release, nil
	}
	// Block in the kernel, which queues the waiters: polling with
	// LOCK_NB starves against a process that locks again at once.
	got := make(chan error, 1)
	go func() {
		for {
			err := syscall.Flock(fd, syscall.LOCK_EX)
			if !errors.Is(err, syscall.EINTR) {
				got <- err
				return
			}
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			release()
			return nil, fmt.Errorf("filestore: flock %s: %w", l.name, err)
		}
		return release, nil
	case <-ctx.Done():
		go func() {
			<-got
			release()
		}()
		return nil, fmt.Errorf("filestore: waiting for the lock on %s: %w", l.name, ctx.Err())
	}
}

// close releases nothing: the lock is held only between lock and unlock.
func (l *locker) close() error { return nil }
