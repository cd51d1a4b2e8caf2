package filestore

// LockKind is the locking of this platform: "flock" or "lockfile".
const LockKind = lockKind
