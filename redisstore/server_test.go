package redisstore_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// server is a redis-server of the test's own, on a free loopback port with
// a temporary directory and no persistence.
type server struct {
	bin, addr, dir string
	cmd            *exec.Cmd
}

// startRedis starts a redis-server found on PATH and stops it when the test
// ends. Without one the test is skipped, unless FAILOVER_REQUIRE_REDIS is
// set (as .ci/run does): then it fails.
func startRedis(t testing.TB) *server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("FAILOVER_REQUIRE_REDIS") != "" {
			t.Fatalf("redis-server not found on PATH: %v", err)
		}
		t.Skip("redis-server not found on PATH; install Debian's redis-server package")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &server{bin: bin, addr: addr, dir: t.TempDir()}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

// start runs the server and waits until it answers PING.
func (s *server) start(t testing.TB) {
	t.Helper()
	_, port, _ := net.SplitHostPort(s.addr)
	s.cmd = exec.Command(s.bin, "--port", port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.stop()
			t.Fatalf("redis-server on %s did not answer within 10 s", s.addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop kills the server, as a crash would.
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// client returns a client of the server, closed when the test ends.
func (s *server) client(t testing.TB) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: s.addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func (s *server) String() string { return fmt.Sprintf("redis-server on %s", s.addr) }
