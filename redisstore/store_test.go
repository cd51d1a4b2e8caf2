package redisstore_test

import (
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/redisstore"
	"github.com/llmfailover/failover/storetest"
)

// open returns a store on srv, closed when the test ends: one replica.
func open(t testing.TB, srv *server, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(srv.client(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the Store conformance tests against Redis: every
// replica has its own client and subscription, each test its own server.
// The timeout is a second, not 100 ms: the suite checks what is shared, and
// a Take that times out on a loaded machine falls back to local limits.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Connect {
		srv := startRedis(t)
		return func() failover.Store { return open(t, srv, redisstore.WithTimeout(time.Second)) }
	})
}
