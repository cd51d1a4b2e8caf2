package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/redisstore"
	"github.com/llmfailover/failover/storetest"
	"github.com/redis/go-redis/v9"
)

// canary is an API key that must never reach Redis or the logs.
const canary = "sk-proj-CANARY0123456789abcdefCANARY"

// dump returns every key of rdb with its contents, as text.
func dump(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, k := range rdb.Keys(ctx, "*").Val() {
		b.WriteString(k + " = ")
		switch rdb.Type(ctx, k).Val() {
		case "string":
			b.WriteString(rdb.Get(ctx, k).Val())
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				b.WriteString(f + ":" + v + " ")
			}
		case "set":
			b.WriteString(strings.Join(rdb.SMembers(ctx, k).Val(), " "))
		case "zset":
			b.WriteString(strings.Join(rdb.ZRange(ctx, k, 0, -1).Val(), " "))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestWindowsAndSecrets: a cooldown is written with a TTL equal to its
// window and a Disable with none; nothing written, published or logged
// holds the API key.
func TestWindowsAndSecrets(t *testing.T) {
	srv := startRedis(t)
	rdb := srv.client(t)
	sub := rdb.Subscribe(context.Background(), "failover:changes")
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(context.Background()); err != nil { // the subscription
		t.Fatal(err)
	}
	clock := storetest.NewClock()
	up := storetest.NewProvider(clock)
	log := &logBuffer{}
	store := open(t, srv, redisstore.WithLogger(log.logger()))
	p, err := failover.New([]failover.Member[string]{
		{Name: "free", Client: canary, Limits: failover.Limits{RPM: 10, TPM: 1000}},
		{Name: "paid", Client: "sk-paid-" + canary, Priority: 1},
	}, failover.WithStore(store), failover.WithClock(clock.Now), failover.WithLogger(log.logger()))
	if err != nil {
		t.Fatal(err)
	}
	up.Script(canary, storetest.RateLimited(30*time.Second))
	if _, err := failover.Do(context.Background(), p, up.Call, failover.Tokens(100)); err != nil {
		t.Fatal(err)
	}
	if err := p.Disable("paid"); err != nil {
		t.Fatal(err)
	}
	var published []string
	for len(published) < 2 {
		msg, err := sub.ReceiveMessage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		published = append(published, msg.Payload)
	}
	if ttl := rdb.PTTL(context.Background(), "failover:member:free").Val(); ttl <= 29*time.Second || ttl > 30*time.Second {
		t.Fatalf("free's cooldown has TTL %v, want its 30 s window", ttl)
	}
	if ttl := rdb.PTTL(context.Background(), "failover:member:paid").Val(); ttl != -1 {
		t.Fatalf("paid's Disable has TTL %v, want none", ttl)
	}
	everything := dump(t, rdb) + strings.Join(published, "\n") + log.String()
	if !strings.Contains(everything, "failover:member:free") || !strings.Contains(everything, "rate_limit") {
		t.Fatalf("the dump misses free's cooldown:\n%s", everything)
	}
	if strings.Contains(everything, "CANARY") {
		t.Fatalf("the API key reached Redis or the logs:\n%s", everything)
	}
}

// counter counts the commands a client sends, but for the store's own
// resync (PING, SMEMBERS, HGETALL) and the handshake of its connections,
// which run in the background: every command a call could wait on is a
// script.
type counter struct{ n atomic.Int64 }

func (c *counter) count(cmd redis.Cmder) {
	switch cmd.Name() {
	case "ping", "smembers", "hgetall", "hello", "client": // and a new connection's handshake
	default:
		c.n.Add(1)
	}
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

// TestHealthyPathNeverWaitsOnRedis: calls on healthy members send no
// command to Redis and allocate nothing; a member with RPM limits costs one
// script call each.
func TestHealthyPathNeverWaitsOnRedis(t *testing.T) {
	srv := startRedis(t)
	rdb := srv.client(t)
	var c counter
	rdb.AddHook(&c)
	store, err := redisstore.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	healthy, err := failover.New(members(), failover.WithStore(store))
	if err != nil {
		t.Fatal(err)
	}
	limited, err := failover.New([]failover.Member[string]{{Name: "limited", Client: "limited", Limits: failover.Limits{RPM: 1000}}}, failover.WithStore(store))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ok := func(context.Context, failover.Member[string]) (string, error) { return "ok", nil }
	before := c.n.Load()
	if n := testing.AllocsPerRun(1000, func() { _, _ = failover.Do(ctx, healthy, ok) }); n != 0 {
		t.Fatalf("a healthy call with the Redis store allocates %v times", n)
	}
	if n := c.n.Load() - before; n != 0 {
		t.Fatalf("1001 healthy calls sent %d commands to Redis, want 0", n)
	}
	if _, err := failover.Do(ctx, limited, ok); err != nil { // loads the script: EVALSHA, then EVAL
		t.Fatal(err)
	}
	before = c.n.Load()
	for range 100 {
		if _, err := failover.Do(ctx, limited, ok); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.n.Load() - before; n != 100 {
		t.Fatalf("100 calls on a member with RPM limits sent %d commands, want 100", n)
	}
}

// TestNewRejectsBadInput: New names each bad option and never panics.
func TestNewRejectsBadInput(t *testing.T) {
	if _, err := redisstore.New(nil); !errors.Is(err, failover.ErrInvalid) {
		t.Fatalf("New(nil): %v, want ErrInvalid", err)
	}
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer plain.Close()
	if _, err := redisstore.New(plain); !errors.Is(err, failover.ErrInvalid) || !strings.Contains(err.Error(), "ContextTimeoutEnabled") {
		t.Fatalf("New with a client that ignores context deadlines: %v, want ErrInvalid naming ContextTimeoutEnabled", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer rdb.Close()
	_, err := redisstore.New(rdb, redisstore.WithPrefix(""), redisstore.WithLeaseTime(0), redisstore.WithTimeout(-1), redisstore.WithLogger(nil), nil)
	if !errors.Is(err, failover.ErrInvalid) {
		t.Fatalf("New with bad options: %v, want ErrInvalid", err)
	}
	for _, want := range []string{"WithPrefix", "WithLeaseTime", "WithTimeout", "WithLogger", "option 4 is nil"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// TestDayKey: a member's day is counted in one hash named by the day's
// end, prefix:day:<end-ms>:<member>, that lives an hour past that end.
func TestDayKey(t *testing.T) {
	srv := startRedis(t)
	rdb := srv.client(t)
	clock := storetest.NewClock() // 16:00 on 31 December in Los Angeles
	up := storetest.NewProvider(clock)
	p, err := failover.New([]failover.Member[string]{
		{Name: "free", Client: "free", Limits: failover.Limits{RPD: 5, TPD: 1000, DayZone: "America/Los_Angeles"}},
	}, failover.WithStore(open(t, srv)), failover.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := failover.Do(context.Background(), p, up.Call, failover.Tokens(100)); err != nil {
			t.Fatal(err)
		}
	}
	end := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC) // midnight in Los Angeles
	key := "failover:day:" + strconv.FormatInt(end.UnixMilli(), 10) + ":free"
	got := rdb.HGetAll(context.Background(), key).Val()
	if got["r"] != "2" || got["t"] != "200" {
		t.Fatalf("%s = %v, want r 2 and t 200\n%s", key, got, dump(t, rdb))
	}
	want := end.Sub(clock.Now()) + time.Hour
	if ttl := rdb.PTTL(context.Background(), key).Val(); ttl <= want-time.Second || ttl > want {
		t.Fatalf("%s has TTL %v, want %v: an hour past the day's end", key, ttl, want)
	}
}
