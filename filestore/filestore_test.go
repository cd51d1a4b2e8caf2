package filestore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/llmfailover/failover/filestore"
	"github.com/llmfailover/failover/storetest"
	"github.com/sashabaranov/go-openai"
)

// open opens the store at path, closed when the test ends.
func open(t testing.TB, path string) *filestore.Store {
	t.Helper()
	s, err := filestore.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestConformance runs the Store conformance suite on one file per test:
// with a Store per replica (each polls the file, as separate processes
// do), and with one Store that every replica shares.
func TestConformance(t *testing.T) {
	t.Run("StorePerReplica", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Connect {
			path := filepath.Join(t.TempDir(), "state.json")
			return func() failover.Store { return open(t, path) }
		})
	})
	t.Run("OneStore", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Connect {
			s := open(t, filepath.Join(t.TempDir(), "state.json"))
			return func() failover.Store { return s }
		})
	})
}

// A file that is not a filestore file is an error of Open that wraps
// ErrFormat, and Open leaves it as it was: same bytes, same time, no lock
// file.
func TestOpenRefusesForeignFiles(t *testing.T) {
	valid := validFile(t)
	files := map[string]string{
		"text":             "hello, this is my shopping list\n- milk\n",
		"binary":           "\x00\x01\x02\xff\xfe",
		"truncated":        valid[:len(valid)/2],
		"truncated-end":    valid[:len(valid)-3],
		"another shape":    `{"name": "my-app", "version": "1.2.3", "dependencies": {}}`,
		"array":            `[1, 2, 3]`,
		"null":             `null`,
		"another format":   `{"format": "com.example.cache", "version": 1}`,
		"newer version":    strings.Replace(valid, `"version": 1,`, `"version": 2,`, 1),
		"version zero":     strings.Replace(valid, `"version": 1,`, `"version": 0,`, 1),
		"unknown field":    strings.Replace(valid, `"counter"`, `"extra": true, "counter"`, 1),
		"bad state":        strings.Replace(valid, `"state": "disabled"`, `"state": "sleeping"`, 1),
		"bad lane":         strings.Replace(valid, `"lane": "permanent"`, `"lane": "sideways"`, 1),
		"trailing data":    valid + `{"format": "x"}`,
		"version above it": regexp.MustCompile(`"counter": \d+`).ReplaceAllString(valid, `"counter": 0`),
	}
	for name, content := range files {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
			s, err := filestore.Open(path)
			if err == nil {
				s.Close()
				t.Fatalf("Open of a %s file succeeded", name)
			}
			if !errors.Is(err, filestore.ErrFormat) {
				t.Fatalf("Open: %v, want an error wrapping ErrFormat", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("the error %q does not name the file", err)
			}
			t.Logf("%s: %v", name, err)
			untouched(t, path, content, old)
			if _, err := os.Stat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Open left a lock file: %v", err)
			}
		})
	}
}

// validFile returns the content of a store's file with a disabled member.
func validFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.json")
	s, err := filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Save(failover.Shared{Member: "free", State: failover.Disabled, Lane: failover.LanePermanent, Reason: failover.ReasonAuth, At: time.Now()})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"version": 1,`, `"counter": `, `"state": "disabled"`, `"lane": "permanent"`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("the file has no %s:\n%s", want, b)
		}
	}
	return string(b)
}

// untouched fails t unless the file at path holds content and was last
// modified at mtime.
func untouched(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != content {
		t.Errorf("the file changed:\n%q\nwant\n%q", b, content)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !info.ModTime().Equal(mtime) {
		t.Errorf("the file was modified at %v, want %v (untouched)", info.ModTime(), mtime)
	}
}

// A file that another program overwrites while the store is open is never
// written over: Save keeps its change, Lease and Take fail (the pool uses
// its local state), Close says what was not written.
func TestForeignFileIsNeverOverwritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	s, err := filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	foreign := "not yours\n"
	if err := os.WriteFile(path, []byte(foreign), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	s.Save(failover.Shared{Member: "free", State: failover.Disabled, Lane: failover.LanePermanent, Reason: failover.ReasonAuth})
	if _, _, err := s.Lease(context.Background(), "free", "me", time.Now()); !errors.Is(err, filestore.ErrFormat) {
		t.Errorf("Lease on a foreign file: %v, want ErrFormat", err)
	}
	if _, _, err := s.Take(context.Background(), "free", failover.Limits{RPM: 1}, 0, time.Now()); !errors.Is(err, filestore.ErrFormat) {
		t.Errorf("Take on a foreign file: %v, want ErrFormat", err)
	}
	err = s.Close()
	if !errors.Is(err, filestore.ErrFormat) || !strings.Contains(err.Error(), "1 changes not written") {
		t.Errorf("Close: %v, want the unwritten change and ErrFormat", err)
	}
	untouched(t, path, foreign, old)
	if _, _, err := s.Lease(context.Background(), "free", "me", time.Now()); !errors.Is(err, filestore.ErrClosed) {
		t.Errorf("Lease after Close: %v, want ErrClosed", err)
	}
}

// A missing or empty file is a fresh store; a missing directory is an
// error.
func TestMissingAndEmptyFiles(t *testing.T) {
	dir := t.TempDir()
	for name, setup := range map[string]func(path string) error{
		"missing": func(string) error { return nil },
		"empty":   func(path string) error { return os.WriteFile(path, nil, 0o600) },
		"blank":   func(path string) error { return os.WriteFile(path, []byte("\n \n"), 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".json")
			if err := setup(path); err != nil {
				t.Fatal(err)
			}
			s := open(t, path)
			var got []failover.Shared
			s.Watch(func(sh failover.Shared) { got = append(got, sh) })
			if len(got) != 0 {
				t.Fatalf("a %s file has states: %v", name, got)
			}
		})
	}
	if _, err := filestore.Open(filepath.Join(dir, "no-such-dir", "state.json")); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
	if _, err := filestore.Open(dir); err == nil {
		t.Error("Open of a directory succeeded")
	}
}

// Close writes what Save queued, and the next Open reads it: states,
// leases, and the RPM and RPD counts.
func TestStateOutlivesTheStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	lim := failover.Limits{RPM: 5, RPD: 7}
	s, err := filestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	until := now.Add(30 * time.Second)
	s.Save(failover.Shared{Member: "limited", State: failover.CoolingDown, Lane: failover.LaneTransient, Reason: failover.ReasonRateLimit, Level: 1, Until: until, At: now, Origin: "run1", Seq: 1})
	if _, ok, err := s.Lease(context.Background(), "probe", "run1", now); err != nil || !ok {
		t.Fatalf("Lease: %v, %v", ok, err)
	}
	for i := range 5 {
		if ok, _, err := s.Take(context.Background(), "counted", lim, 0, now.Add(time.Duration(i)*time.Second)); err != nil || !ok {
			t.Fatalf("Take %d: %v, %v", i, ok, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	var got []failover.Shared
	s.Watch(func(sh failover.Shared) { got = append(got, sh) })
	if len(got) != 1 || got[0].Member != "limited" || !got[0].Until.Equal(until) || got[0].Reason != failover.ReasonRateLimit || got[0].Version == 0 {
		t.Fatalf("the next run sees %+v, want the 429's window", got)
	}
	if end, ok, err := s.Lease(context.Background(), "probe", "run2", now.Add(time.Second)); err != nil || ok || !end.Equal(now.Add(30*time.Second)) {
		t.Fatalf("Lease of another run's probe: %v, %v, %v; want refused until %v", end, ok, err, now.Add(30*time.Second))
	}
	ok, at, err := s.Take(context.Background(), "counted", lim, 0, now.Add(10*time.Second))
	if err != nil || ok || !at.Equal(now.Add(time.Minute)) {
		t.Fatalf("a sixth call in the minute: %v, %v, %v; want refused until %v", ok, at, err, now.Add(time.Minute))
	}
	for i := range 2 {
		if ok, _, err := s.Take(context.Background(), "counted", lim, 0, now.Add(time.Minute+time.Duration(i)*time.Second)); err != nil || !ok {
			t.Fatalf("call %d of the next minute: %v, %v", i, ok, err)
		}
	}
	ok, at, err = s.Take(context.Background(), "counted", lim, 0, now.Add(2*time.Minute))
	if dayEnd := lim.DayEnd(now); err != nil || ok || !at.Equal(dayEnd) {
		t.Fatalf("an eighth call in the day: %v, %v, %v; want refused until %v", ok, at, err, dayEnd)
	}
}

// Saves coalesce: a burst of changes of one member costs few writes, and
// the last one wins. Save never waits for the disk.
func TestSaveQueues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	s := open(t, path)
	var mu sync.Mutex
	var answers int
	s.Watch(func(failover.Shared) { mu.Lock(); answers++; mu.Unlock() })
	start := time.Now()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 1000
	var slowest time.Duration
	for i := range n {
		t0 := time.Now()
		s.Save(failover.Shared{Member: "m", State: failover.CoolingDown, Lane: failover.LaneTransient, Reason: failover.ReasonServer, Until: now.Add(time.Duration(i+1) * time.Second), Origin: "o", Seq: uint64(i + 1)})
		slowest = max(slowest, time.Since(t0))
	}
	took := time.Since(start)
	last := now.Add(n * time.Second)
	storetest.Eventually(t, "the last save never reached the file", func() bool {
		b, err := os.ReadFile(path)
		return err == nil && bytes.Contains(b, []byte(last.Format(time.RFC3339)))
	})
	mu.Lock()
	t.Logf("%d saves of one member took %v (slowest %v) and reached the file in %d writes", n, took, slowest, answers)
	if answers >= n/2 {
		t.Errorf("%d writes for %d saves of one member: they do not coalesce", answers, n)
	}
	mu.Unlock()
	if slowest > 50*time.Millisecond {
		t.Errorf("a Save took %v: it waits on the disk", slowest)
	}
}

// A revoked key costs one call across five runs of a CLI that keeps its
// state in a file (issue 16's target; without the file, each run pays
// one). Each run opens the store, makes one call and closes the store, as
// a process would.
func TestFiveRunsOneCall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	run := func(srv *failovertest.Server, store failover.Store) {
		t.Helper()
		opts := []failover.Option{}
		if store != nil {
			opts = append(opts, failover.WithStore(store))
		}
		pool, err := failover.New(failover.OpenAIKeys("key", srv.Config, "sk-revoked", "sk-good"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = failover.NewOpenAI(pool).CreateChatCompletion(ctx, openai.ChatCompletionRequest{
			Model:    openai.GPT4oMini,
			Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hi"}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	without := failovertest.NewServer()
	without.Script("sk-revoked", failovertest.Unauthorized())
	for range 5 {
		run(without, nil)
	}

	srv := failovertest.NewServer()
	srv.Script("sk-revoked", failovertest.Unauthorized())
	for i := range 5 {
		store, err := filestore.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		run(srv, store)
		if n := srv.Calls("sk-good"); n != i+1 {
			t.Errorf("after run %d the good key served %d calls, want %d", i+1, n, i+1)
		}
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("five runs with a revoked key: %d calls to it without a store, %d with filestore", without.Calls("sk-revoked"), srv.Calls("sk-revoked"))
	if n := srv.Calls("sk-revoked"); n != 1 {
		t.Errorf("the revoked key got %d calls in five runs, want 1", n)
	}
	if n := srv.Calls("sk-good"); n != 5 {
		t.Errorf("the good key got %d calls, want 5", n)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("sk-")) {
		t.Errorf("the file holds a key:\n%s", b)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil || doc["format"] != "github.com/llmfailover/failover/filestore" {
		t.Errorf("the file is not a filestore file: %v\n%s", err, b)
	}
}

// A lock file left by a dead process does not stop the store: with flock
// the kernel released its lock; with the lock-file fallback (no flock, or
// the filestore_lockfile build tag) a lock file older than 10 s is a dead
// holder's and is taken over.
func TestStaleLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path+".lock", []byte("12345\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path+".lock", old, old); err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, ok, err := s.Lease(ctx, "m", "me", time.Now()); err != nil || !ok {
		t.Fatalf("Lease with a stale lock file (%s): %v, %v", filestore.LockKind, ok, err)
	}
	t.Logf("%s: a stale lock file cost %v", filestore.LockKind, time.Since(start))
}

// A lock that its holder keeps makes Lease and Take fail when their
// context ends, not hang: the pool then uses its local state.
func TestLockWaitIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	a := open(t, path)
	b := open(t, path)
	release := make(chan struct{})
	held := make(chan struct{})
	go func() {
		// A Take whose window function blocks holds a's lock.
		_ = filestore.HoldLock(a, func() { close(held); <-release })
	}()
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := b.Take(ctx, "m", failover.Limits{RPM: 1}, 0, time.Now())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Take while another store holds the lock: %v, want the context's deadline", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Take waited %v for a 100 ms deadline", took)
	}
	close(release)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	if ok, _, err := b.Take(ctx2, "m", failover.Limits{RPM: 1}, 0, time.Now()); err != nil || !ok {
		t.Errorf("Take once the lock is free: %v, %v", ok, err)
	}
}

// BenchmarkTake is one call's reservation on a member with an RPM limit:
// a read-modify-write of the file (read, decode, encode, write, fsync,
// rename) under the lock.
func BenchmarkTake(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "state.json"))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lim := failover.Limits{RPM: 60}
	for i := 0; b.Loop(); i++ {
		if _, _, err := s.Take(context.Background(), "m", lim, 0, now.Add(time.Duration(i)*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSave is a Save: queued, never waiting on the disk.
func BenchmarkSave(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "state.json"))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; b.Loop(); i++ {
		s.Save(failover.Shared{Member: "m", State: failover.CoolingDown, Lane: failover.LaneTransient, Until: now.Add(time.Duration(i) * time.Second), Seq: uint64(i)})
	}
}

// Open removes the temporary files of writes that died an hour ago or
// more, and leaves everything else in the directory alone.
func TestLeftoverTempFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	old := time.Now().Add(-2 * time.Hour)
	files := map[string]bool{ // name: removed
		".state.json.tmp123": true,
		".state.json.tmp456": false, // recent: maybe a write in progress
		".other.json.tmp789": false,
		"notes.txt":          false,
	}
	for name, removed := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if removed || name != ".state.json.tmp456" {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	open(t, path)
	for name, removed := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if gone := errors.Is(err, os.ErrNotExist); gone != removed {
			t.Errorf("%s: removed %v, want %v", name, gone, removed)
		}
	}
}

// Take and Lease give up when the caller's context ends while another
// read-modify-write of the store holds the file (regression: they waited
// for it whatever the context said), and the store works on afterwards.
func TestWaitEndsWithTheContext(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.json"))
	held, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free) // before the store's Close, should the test fail
	holding := make(chan error, 1)
	go func() { holding <- filestore.HoldLock(s, func() { close(held); <-release }) }()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the lock was never held")
	}
	for name, call := range map[string]func(ctx context.Context) error{
		"Take": func(ctx context.Context) error {
			_, _, err := s.Take(ctx, "m", failover.Limits{RPM: 5}, 1, time.Now())
			return err
		},
		"Lease": func(ctx context.Context) error {
			_, _, err := s.Lease(ctx, "m", "h", time.Now())
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- call(ctx) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: %v, want the context's deadline", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s waited for the held lock past its context", name)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s returned after %v: it waited for the lock", name, d)
		}
		cancel()
	}
	free()
	if err := <-holding; err != nil {
		t.Fatal(err)
	}
	ok, _, err := s.Take(context.Background(), "m", failover.Limits{RPM: 5}, 1, time.Now())
	if err != nil || !ok {
		t.Fatalf("Take after the wait: %v %v", ok, err)
	}
}
