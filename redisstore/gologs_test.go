package redisstore_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmfailover/failover/redisstore"
	"github.com/redis/go-redis/v9"
)

// The child process of TestSetGoRedisLogger reads its mode and the file for
// its log from these variables.
const (
	childMode = "REDISSTORE_TEST_GOREDIS_LOG_MODE"
	childLog  = "REDISSTORE_TEST_GOREDIS_LOG_FILE"
)

// password is the Redis password of the child's clients; it must never be
// written anywhere once SetGoRedisLogger is in place.
const password = "hunter2-CANARY-redis-pw"

// TestGoRedisLoggerChild runs only as the child process of
// TestSetGoRedisLogger: go-redis's logger is process-wide, so each mode
// gets a process of its own. It points a store and two clients at a closed
// port (one with the password in the URL as it should be, one with the URL
// wrongly given as Addr, which go-redis then quotes in its dial error) and
// writes what the slog logger received to the file.
func TestGoRedisLoggerChild(t *testing.T) {
	mode := os.Getenv(childMode)
	if mode == "" {
		t.Skip("the child process of TestSetGoRedisLogger")
	}
	var log logBuffer
	switch mode {
	case "slog":
		redisstore.SetGoRedisLogger(log.logger())
	case "nil":
		redisstore.SetGoRedisLogger(nil)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // connections to addr are now refused

	opts, err := redis.ParseURL("redis://:" + password + "@" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	opts.ContextTimeoutEnabled, opts.DialerRetries = true, 1
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	misconfigured := redis.NewClient(&redis.Options{Addr: "redis://:" + password + "@" + addr,
		ContextTimeoutEnabled: true, DialerRetries: 1})
	defer misconfigured.Close()
	store, err := redisstore.New(rdb, redisstore.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if rdb.Ping(ctx).Err() == nil || misconfigured.Ping(ctx).Err() == nil {
			t.Fatal("a PING to a closed port succeeded")
		}
	}
	if err := os.WriteFile(os.Getenv(childLog), []byte(log.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// SetGoRedisLogger routes go-redis's own lines (its dial errors during an
// outage) to the slog logger instead of the standard error, redacted; nil
// silences them. Without it (the baseline) they reach the standard error
// with the password of a misconfigured address in them.
func TestSetGoRedisLogger(t *testing.T) {
	const dialLine = "connection pool: failed to dial"
	for _, mode := range []string{"default", "slog", "nil"} {
		t.Run(mode, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "log")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestGoRedisLoggerChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), childMode+"="+mode, childLog+"="+file)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), "--- PASS: TestGoRedisLoggerChild") {
				t.Fatalf("the child did not run:\n%s", stdout.String())
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			logged := string(b)
			onStderr := strings.Count(stderr.String(), dialLine)
			inLog := strings.Count(logged, dialLine)
			t.Logf("go-redis dial lines: %d on stderr, %d in the slog logger", onStderr, inLog)

			switch mode {
			case "default":
				if onStderr == 0 || !strings.Contains(stderr.String(), password) {
					t.Fatalf("baseline: go-redis should print its dial errors, password included, to stderr:\n%s", stderr.String())
				}
				return
			case "slog":
				if inLog == 0 || strings.Count(logged, "level=WARN msg=\"go-redis: "+dialLine) != inLog {
					t.Errorf("the slog logger has no go-redis dial lines at WARN:\n%s", logged)
				}
				if !strings.Contains(logged, "redis://[REDACTED]@") {
					t.Errorf("the misconfigured address is not shown redacted:\n%s", logged)
				}
			case "nil":
				if logged != "" {
					t.Errorf("nothing should be logged:\n%s", logged)
				}
			}
			if onStderr != 0 || strings.Contains(stderr.String(), "redis: ") {
				t.Errorf("go-redis lines on stderr:\n%s", stderr.String())
			}
			for name, text := range map[string]string{"stderr": stderr.String(), "stdout": stdout.String(), "log": logged} {
				if strings.Contains(text, password) {
					t.Errorf("the password is in %s:\n%s", name, text)
				}
			}
		})
	}
}
