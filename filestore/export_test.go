package filestore

import "context"

// LockKind is the locking of this platform: "flock" or "lockfile".
const LockKind = lockKind

// HoldLock runs fn inside a read-modify-write of s, holding its lock.
func HoldLock(s *Store, fn func()) error {
	return s.update(context.Background(), func(*document) bool { fn(); return false })
}
