// Package filestore is a failover.Store in one file, for single-host apps
// and CLIs: what a pool learns (a revoked key, a rate limit's window, a
// Disable), its probe leases, and the RPM, TPM, RPD and TPD counts of its
// limited members outlive the process. A CLI run that finds a key revoked
// saves it, and the next run skips the key without calling it.
//
//	store, err := filestore.Open(filepath.Join(stateDir, "failover.json"))
//	if err != nil { ... } // a file that is not a filestore file is an error: ErrFormat
//	defer store.Close()  // writes the changes not yet written
//	pool, err := failover.New(members, failover.WithStore(store))
//
// # Sharing
//
// Every [Store] open on a path, in this process or another, shares the
// same state: each polls the file (its size, modification time and
// identity, every 250 ms, and reads it at least every 2 s) and passes the
// states that changed to its watchers, so a change reaches the other
// processes within about a quarter of a second.
//
// # Writes
//
// Save never waits on the disk: it queues the change, coalescing changes
// of one member, for the store's goroutine, which writes at once. Lease
// and Take, which a pool calls when a member's window ends and before each
// call on a member with RPM, TPM, RPD or TPD limits, read, change and
// write the file before they return (about a millisecond on a local disk;
// an fsync each). Each write happens under a lock, reads the file again,
// applies the queued saves and the change, writes a temporary file in the
// same directory, syncs it and renames it over the file: a reader sees the
// old file or the new one, never a part, and a crash leaves one of them
// (Open removes a dead write's temporary file once it is an hour old).
//
// The lock is flock(2) on path + ".lock" on Linux, macOS and the BSDs; the
// kernel releases it when its holder dies. The lock file is left in
// place. On other platforms (Windows, Plan 9, js/wasm, illumos, AIX) there
// is no flock: the lock is the file path + ".lock" itself, created with
// O_EXCL and removed on release, and a lock file older than 10 s is taken
// to be a dead holder's and removed. That is best effort: a holder stalled
// for longer than 10 s in the middle of a write may lose the lock (the
// build tag filestore_lockfile selects this fallback everywhere, to test
// it). On every platform, only processes that use this package honour the
// lock, and network file systems may not honour flock.
//
// # Format
//
// The file is JSON: an object whose "format" field is
// "github.com/llmfailover/failover/filestore" and whose "version" is 1,
// with each member's state, the leases and the limit windows. A missing or
// empty file is a fresh store. Open refuses anything else (text that is
// not JSON, a truncated file, JSON of another shape, unknown fields, a
// newer version) with an error that wraps [ErrFormat], and the store never
// writes over such a file. The file holds member names, states, reasons and
// counts: never API keys or error texts.
//
// Times in the file are the pools' clocks. A store's state is meant for
// one set of members: pools with different members that use the same
// names should use different files.
package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/llmfailover/failover"
)

// Timings of the store.
const (
	pollEvery   = 250 * time.Millisecond // how often the file's stamp is checked
	rereadEvery = 2 * time.Second        // the file is read at least this often
	leaseTime   = 30 * time.Second       // how long a probe lease lasts
	lockWait    = 5 * time.Second        // the longest wait for the lock without a deadline
)

// ErrClosed is returned by Lease and Take after [Store.Close]; the pool
// then uses its local state.
var ErrClosed = errors.New("filestore: store closed")

// Store is a failover.Store on one file. Create it with [Open] and close
// it with [Store.Close]; its methods are safe for concurrent use.
type Store struct {
	path string
	lock *locker

	tx         chan struct{} // held (full) by the one read-modify-write at a time in this Store; the lock orders processes
	lockClosed bool          // while tx is held

	mu       sync.Mutex
	pending  map[string]failover.Shared // saved, not yet written
	queue    []*op                      // read-modify-writes waiting for the next transaction
	watchers []func(failover.Shared)
	states   map[string]failover.Shared // the file's states, as last read
	seen     map[string]uint64          // the largest version of each member passed to the watchers
	counter  uint64                     // the file's counter, as last read
	stamp    stamp                      // the file, as last read
	readAt   time.Time                  // when it was last read
	err      error                      // the last write's failure, until a write succeeds
	closed   bool

	kick     chan struct{} // wakes the writer
	stop     chan struct{}
	done     chan struct{}
	closing  sync.Once
	closeErr error
}

var _ failover.Store = (*Store)(nil)

// Open returns the store in the file at path, which need not exist: a
// missing or empty file is a fresh store, created at the first change. Its
// directory must exist. A file that is not a filestore file (see the
// package documentation) is an error that wraps [ErrFormat], and the file
// is left as it is. Open starts a goroutine that writes the store's
// changes and watches the file for other processes' changes until Close.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: filestore.Open with an empty path", failover.ErrInvalid)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	// The rename of a write replaces a symbolic link: write to its target.
	if info, err := os.Lstat(abs); err == nil && info.Mode()&fs.ModeSymlink != 0 {
		if abs, err = filepath.EvalSymlinks(abs); err != nil {
			return nil, fmt.Errorf("filestore: %w", err)
		}
	}
	d, st, err := read(abs)
	if err != nil {
		return nil, err
	}
	lock, err := openLock(abs)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	removeLeftovers(abs)
	s := &Store{
		path:    abs,
		lock:    lock,
		pending: map[string]failover.Shared{},
		states:  map[string]failover.Shared{},
		seen:    map[string]uint64{},
		kick:    make(chan struct{}, 1),
		tx:      make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.mu.Lock()
	s.observe(d, st, nil)
	s.mu.Unlock()
	go s.loop()
	return s, nil
}

// Path returns the absolute path of the store's file.
func (s *Store) Path() string { return s.path }

// Close stops the store's goroutine, writes the changes not yet written
// and releases the lock file. It returns an error if changes are left
// unwritten (the file became unwritable or foreign). Watchers are
// not called after Close; pools that use the store go on with their local
// state. Close the store after the last call of its pools.
func (s *Store) Close() error {
	s.closing.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		<-s.done
		err := s.flush()
		s.mu.Lock()
		if n := len(s.pending); n > 0 {
			err = fmt.Errorf("filestore: %d changes not written to %s: %w", n, s.path, errors.Join(err, s.err))
		}
		s.mu.Unlock()
		s.tx <- struct{}{}
		s.lockClosed = true
		err = errors.Join(err, s.lock.close())
		<-s.tx
		s.closeErr = err
	})
	return s.closeErr
}

// Save implements failover.Store: it queues s for the store's goroutine,
// which writes it and passes the result to the watchers. A state that
// cannot be written (no member name, an unknown State or Lane) is dropped.
func (s *Store) Save(sh failover.Shared) {
	if _, err := sh.State.MarshalText(); err != nil || sh.Member == "" {
		return
	}
	if _, ok := laneNames[sh.Lane.String()]; !ok {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.pending[sh.Member] = sh
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Watch implements failover.Store: fn gets the states in the file (read
// again now) before Watch returns, and every change from then on.
func (s *Store) Watch(fn func(failover.Shared)) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.watchers = append(s.watchers[:len(s.watchers):len(s.watchers)], fn)
	s.mu.Unlock()
	s.refresh()
	s.mu.Lock()
	stored := make([]failover.Shared, 0, len(s.states))
	for _, st := range s.states {
		stored = append(stored, st)
	}
	s.mu.Unlock()
	for _, st := range stored {
		fn(st)
	}
}

// Lease implements failover.Store. A lease lasts 30 s. It waits for the
// lock until ctx ends, and at most 5 s without a deadline.
func (s *Store) Lease(ctx context.Context, member, holder string, now time.Time) (time.Time, bool, error) {
	var until time.Time
	var ok bool
	err := s.update(ctx, func(d *document) bool {
		if l := d.Leases[member]; l != nil && l.Holder != holder && now.Before(l.Until) {
			until = l.Until
			return false
		}
		until, ok = now.Add(leaseTime), true
		d.Leases[member] = &leaseRec{Holder: holder, Until: until}
		return true
	})
	if err != nil {
		return time.Time{}, false, err
	}
	return until, ok, nil
}

// Take implements failover.Store. It waits for the lock until ctx ends,
// and at most 5 s without a deadline.
func (s *Store) Take(ctx context.Context, member string, l failover.Limits, tokens int, now time.Time) (bool, time.Time, error) {
	if l.RPM <= 0 && l.TPM <= 0 && l.RPD <= 0 && l.TPD <= 0 {
		return true, time.Time{}, nil // nothing to count
	}
	var ok bool
	var at time.Time
	err := s.update(ctx, func(d *document) bool {
		w := d.Limits[member]
		if w == nil {
			w = &windowRec{}
		}
		var changed bool
		ok, at, changed = take(w, l, tokens, now)
		if changed {
			d.Limits[member] = w
		}
		return changed
	})
	if err != nil {
		return false, time.Time{}, err
	}
	return ok, at, nil
}

// loop is the store's goroutine: it writes queued saves and polls the
// file.
func (s *Store) loop() {
	defer close(s.done)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
			_ = s.flush()
		case <-tick.C:
			_ = s.flush() // again, after a failed write
			s.poll()
		}
	}
}

// flush writes the queued saves, if any.
func (s *Store) flush() error {
	s.mu.Lock()
	n := len(s.pending)
	s.mu.Unlock()
	if n == 0 {
		return nil
	}
	return s.update(context.Background(), nil)
}

// poll reads the file if it changed since it was last read, or if it was
// last read rereadEvery ago.
func (s *Store) poll() {
	var st stamp
	info, err := os.Stat(s.path)
	switch {
	case err == nil:
		st = stamp{info}
	case !errors.Is(err, fs.ErrNotExist):
		return
	}
	s.mu.Lock()
	same := st.same(s.stamp) && time.Since(s.readAt) < rereadEvery
	s.mu.Unlock()
	if !same {
		s.refresh()
	}
}

// refresh reads the file and passes the states that changed to the
// watchers. A file that cannot be read now is read again at the next poll.
func (s *Store) refresh() {
	d, st, err := read(s.path)
	if err != nil {
		return
	}
	s.mu.Lock()
	out := s.observe(d, st, nil)
	s.mu.Unlock()
	s.deliver(out)
}

// observe takes d, read from the file with stamp st, as the stored state,
// unless the store has already read a later version, and returns the
// states to pass to the watchers: the answers to this store's saves, and
// the states whose version is larger than any passed on before. It is
// called with mu held.
func (s *Store) observe(d *document, st stamp, answers []failover.Shared) []failover.Shared {
	out := answers
	for _, a := range answers {
		s.seen[a.Member] = max(s.seen[a.Member], a.Version)
	}
	if d.Counter < s.counter {
		return out // an older version of the file, read before a write of ours
	}
	s.counter, s.stamp, s.readAt = d.Counter, st, time.Now()
	clear(s.states)
	for name, r := range d.Members {
		sh, err := r.shared(name)
		if err != nil {
			continue // decode checked every record
		}
		s.states[name] = sh
		if r.Version > s.seen[name] {
			s.seen[name] = r.Version
			out = append(out, sh)
		}
	}
	return out
}

// deliver passes states to the watchers, unless the store is closed.
func (s *Store) deliver(states []failover.Shared) {
	if len(states) == 0 {
		return
	}
	s.mu.Lock()
	watchers := s.watchers
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	for _, st := range states {
		for _, fn := range watchers {
			fn(st)
		}
	}
}

// op is one read-modify-write of the file that a caller waits for: fn
// changes d and reports whether it did; nil only writes the queued saves.
type op struct {
	ctx  context.Context
	fn   func(d *document) bool
	err  error      // its own failure: its caller had gone
	done chan error // its outcome
}

// update runs fn in a read-modify-write of the file and returns when it is
// written. The callers waiting at once share one (a group commit): under
// the lock one of them reads the file, applies the queued saves and then
// each fn in turn, and writes the result if anything changed. Then it
// passes the answers to the saves, and the other processes' changes it
// read, to the watchers.
func (s *Store) update(ctx context.Context, fn func(d *document) bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	o := &op{ctx: ctx, fn: fn, done: make(chan error, 1)}
	s.mu.Lock()
	if fn != nil && s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.queue = append(s.queue, o)
	s.mu.Unlock()
	select { // the caller's context bounds the wait for another read-modify-write
	case s.tx <- struct{}{}:
	case err := <-o.done: // in the batch of a caller before us
		return err
	case <-ctx.Done():
		select {
		case err := <-o.done: // a batch ran it meanwhile: its outcome is the call's
			return err
		default:
		}
		return ctx.Err() // o stays queued: the batch that takes it skips it
	}
	select {
	case err := <-o.done: // in the batch of a caller before us
		<-s.tx
		return err
	default:
	}
	s.mu.Lock()
	batch := s.queue
	s.queue = nil
	s.mu.Unlock()
	out, err := s.transact(ctx, batch)
	for _, b := range batch {
		if b.err == nil {
			b.err = err
		}
		b.done <- b.err // before the next caller takes tx
	}
	<-s.tx
	s.deliver(out)
	return <-o.done
}

// transact runs batch in one read-modify-write of the file, with tx
// held. Its error is the error of every op in batch.
func (s *Store) transact(ctx context.Context, batch []*op) ([]failover.Shared, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lockWait)
		defer cancel()
	}
	if s.lockClosed {
		return nil, ErrClosed
	}
	unlock, err := s.lock.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	d, st, err := read(s.path)
	if err != nil {
		s.failed(err)
		return nil, err
	}
	s.mu.Lock()
	saves := s.pending
	s.pending = map[string]failover.Shared{}
	s.mu.Unlock()
	answers := apply(d, saves)
	changed := len(saves) > 0
	for _, o := range batch {
		if o.fn == nil {
			continue
		}
		if o.err = o.ctx.Err(); o.err != nil {
			continue // its caller has gone
		}
		if o.fn(d) {
			changed = true
		}
	}
	if changed {
		if st, err = write(s.path, d, st); err != nil {
			s.mu.Lock()
			for m, sh := range saves {
				if _, newer := s.pending[m]; !newer {
					s.pending[m] = sh
				}
			}
			s.mu.Unlock()
			s.failed(err)
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = nil
	return s.observe(d, st, answers), nil
}

// failed records the error of a read-modify-write, for Close.
func (s *Store) failed(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// apply stores saves in d by the rules of failover.Store.Save and returns
// the answers: each save with its new version, or the stored state that
// outranks it with the save's Origin and Seq. Every save ends the
// member's lease.
func apply(d *document, saves map[string]failover.Shared) []failover.Shared {
	out := make([]failover.Shared, 0, len(saves))
	for _, sh := range saves {
		delete(d.Leases, sh.Member)
		old := failover.Shared{Member: sh.Member}
		if r := d.Members[sh.Member]; r != nil {
			old, _ = r.shared(sh.Member)
		}
		if !keeps(old, sh) {
			old.Origin, old.Seq = sh.Origin, sh.Seq // the answer: what outranked sh
			out = append(out, old)
			continue
		}
		// Versions grow with the wall clock too, so that they keep growing
		// if the file is removed while pools run.
		d.Counter = max(d.Counter+1, uint64(time.Now().UnixMicro()))
		sh.Version = d.Counter
		d.Members[sh.Member] = newRecord(sh)
		out = append(out, sh)
	}
	return out
}

// keeps reports whether a store holding old takes s, by the rules of
// failover.Store.Save (as failover.MemoryStore applies them). The zero
// old is an Active member.
func keeps(old, s failover.Shared) bool {
	if old.State == failover.Disabled && old.Manual && !s.Manual {
		return false
	}
	if s.State == failover.CoolingDown && (old.State == failover.Disabled || (old.State == failover.CoolingDown && !old.Until.Before(s.Until))) {
		return false
	}
	return true
}

// write replaces the file at path with d: a temporary file in the same
// directory, synced, renamed over it. old is the file it replaces, whose
// permissions the new file keeps (a new file is 0600).
func write(path string, d *document, old stamp) (stamp, error) {
	data, err := d.encode()
	if err != nil {
		return stamp{}, fmt.Errorf("filestore: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), tempPrefix(path)+"*")
	if err != nil {
		return stamp{}, fmt.Errorf("filestore: %w", err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if old.info != nil {
		_ = f.Chmod(old.info.Mode().Perm()) // not every platform has permissions
	}
	if _, err := f.Write(data); err != nil {
		return stamp{}, fmt.Errorf("filestore: %w", err)
	}
	if err := f.Sync(); err != nil {
		return stamp{}, fmt.Errorf("filestore: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		return stamp{}, fmt.Errorf("filestore: %w", err)
	}
	if err := f.Close(); err != nil {
		return stamp{}, fmt.Errorf("filestore: %w", err)
	}
	if err := rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		done = true
		return stamp{}, fmt.Errorf("filestore: %w", err)
	}
	done = true
	return stamp{info}, nil
}

// tempPrefix is the start of the names of path's temporary files.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp" }

// removeLeftovers removes the temporary files of path that a process
// which died in the middle of a write left, an hour old or more.
func removeLeftovers(path string) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), tempPrefix(path)) {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
			_ = os.Remove(filepath.Join(filepath.Dir(path), e.Name()))
		}
	}
}

// rename renames tmp over path. Windows refuses while another process
// has the file open (a reader's poll): it tries again, for up to a second.
func rename(tmp, path string) error {
	var err error
	for delay := time.Millisecond; delay < time.Second; delay *= 2 {
		if err = os.Rename(tmp, path); err == nil || !errors.Is(err, fs.ErrPermission) {
			return err
		}
		time.Sleep(delay)
	}
	return err
}
