//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd) || filestore_lockfile

package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// lockKind names the locking of this platform, for errors and the tests.
const lockKind = "lockfile"

// staleLock is how old a lock file must be before a waiter takes it over:
// its holder died. A holder keeps it for one read-modify-write of the
// file, milliseconds.
const staleLock = 10 * time.Second

// locker takes the store's lock on platforms without flock(2) (Windows,
// Plan 9, js/wasm, illumos, AIX, ...): the holder creates path + ".lock"
// with O_EXCL and removes it when done. A lock file older than staleLock
// belongs to a process that died while it held it, and is removed. That
// is best effort: a holder stalled for longer than staleLock (suspended,
// swapped out) may lose the lock to a waiter.
type locker struct {
	name string
}

// openLock checks that the lock file's directory exists.
func openLock(path string) (*locker, error) {
	l := &locker{name: path + ".lock"}
	dir, err := os.Stat(dirOf(path))
	if err != nil {
		return nil, err
	}
	if !dir.IsDir() {
		return nil, fmt.Errorf("filestore: %s is not a directory", dirOf(path))
	}
	return l, nil
}

// lock waits for the lock until ctx ends and returns its release.
func (l *locker) lock(ctx context.Context) (unlock func(), err error) {
	delay := 100 * time.Microsecond
	for {
		f, err := os.OpenFile(l.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
			_ = f.Close()
			return func() { _ = os.Remove(l.name) }, nil
		}
		// Windows refuses to create a file whose deletion is pending with
		// a permission error: another holder's release.
		if !errors.Is(err, fs.ErrExist) && !errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("filestore: lock file %s: %w", l.name, err)
		}
		if info, err := os.Stat(l.name); err == nil && time.Since(info.ModTime()) > staleLock {
			_ = os.Remove(l.name) // its holder died
			continue
		}
		if err := pause(ctx, delay); err != nil {
			return nil, fmt.Errorf("filestore: waiting for the lock file %s: %w", l.name, err)
		}
		delay = min(2*delay, 5*time.Millisecond)
	}
}

// close releases nothing: the lock is held only inside lock and unlock.
func (l *locker) close() error { return nil }

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// dirOf is the directory of path.
func dirOf(path string) string { return filepath.Dir(path) }
