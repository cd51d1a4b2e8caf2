package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sashabaranov/go-openai"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/llmfailover/failover/otelfailover"
)

// The members' keys. They are canaries: the fake provider echoes the
// revoked one in its 401 message, as OpenAI does, and none of them may
// reach a metric.
const (
	freeKey    = "sk-canary-7f3a9c2e5b1d40a8-free"
	revokedKey = "Cn4ry~0dd_shape.KEY/revoked=="
	paidKey    = "sk-canary-7f3a9c2e5b1d40a8-paid"
)

// Usage that the paid key's answers report.
const (
	promptTokens     = 12
	completionTokens = 5
)

// hedgeDelay is how long an attempt may run before the pool starts the
// next member too. It is the one real wait of the run: WithClock does not
// drive hedge timers.
const hedgeDelay = 200 * time.Millisecond

// clock is the pool's virtual time: the run moves it on instead of
// waiting for cooldowns to end.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// demo is a failover pool on a fake provider, recorded by otelfailover
// into a Prometheus registry of its own.
type demo struct {
	srv     *failovertest.Server
	pool    *failover.Pool[*openai.Client]
	client  *failover.OpenAI
	clock   *clock
	handler http.Handler // serves the registry in the Prometheus text format
	close   func() error
}

// newDemo builds the pool: a free key that gets rate limited and a
// revoked key, both first, and a paid key as the fallback. Its meter
// provider's only reader is the Prometheus exporter. opts are added to
// the pool's options.
func newDemo(opts ...failover.Option) (*demo, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	om, err := otelfailover.NewMetrics(mp)
	if err != nil {
		return nil, err
	}

	srv := failovertest.NewServer()
	free := failover.OpenAIMember("free", srv.Config(freeKey))
	revoked := failover.OpenAIMember("revoked", srv.Config(revokedKey))
	paid := failover.OpenAIMember("paid", srv.Config(paidKey))
	free.Model, revoked.Model = "gpt-4o-mini", "gpt-4o-mini"
	paid.Model, paid.Priority = "gpt-4o", 1

	clk := &clock{now: time.Now()}
	cooldowns := failover.DefaultCooldowns()
	cooldowns.PermanentUntilEnable = true // a 401 takes the key out until Enable
	pool, err := failover.New([]failover.Member[*openai.Client]{free, revoked, paid}, append([]failover.Option{
		om.Option(),
		failover.WithCooldowns(cooldowns),
		failover.WithClock(clk.Now),
		failover.WithHedge(hedgeDelay),
		failover.WithRetryBudget(0.1, 3),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	if err := om.Err(); err != nil { // the option observes the pool's gauges
		return nil, err
	}
	return &demo{
		srv:     srv,
		pool:    pool,
		client:  failover.NewOpenAI(pool),
		clock:   clk,
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		close: func() error {
			return mp.Shutdown(context.Background())
		},
	}, nil
}

// answer is a chat completion from member that reports usage.
func answer(member string) failovertest.Response {
	b, _ := json.Marshal(openai.ChatCompletionResponse{ID: "chatcmpl-demo", Object: "chat.completion", Model: "gpt-4o-2024-08-06",
		Choices: []openai.ChatCompletionChoice{{Message: openai.ChatCompletionMessage{Role: "assistant", Content: "from " + member}, FinishReason: "stop"}},
		Usage:   openai.Usage{PromptTokens: promptTokens, CompletionTokens: completionTokens, TotalTokens: promptTokens + completionTokens}})
	return failovertest.Response{Body: string(b)}
}

// run drives the scripted traffic that makes every metric exist: each
// step scripts the provider, makes one call and checks who served it.
func (d *demo) run(ctx context.Context) error {
	ctx = otelfailover.WithOperation(ctx, "chat", "openai")
	req := openai.ChatCompletionRequest{Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hi"}}}
	chat := func(step, want string) error {
		resp, err := d.client.CreateChatCompletion(ctx, req)
		switch {
		case want == "" && err == nil:
			return fmt.Errorf("%s: served, want a failure", step)
		case want == "":
			return nil
		case err != nil:
			return fmt.Errorf("%s: %w", step, err)
		case resp.Choices[0].Message.Content != "from "+want:
			return fmt.Errorf("%s: got %q, want an answer from %s", step, resp.Choices[0].Message.Content, want)
		}
		return nil
	}

	// The free key is rate limited and the revoked key refused: the paid
	// key serves, the free key cools down, the revoked one is disabled.
	d.srv.Script(freeKey, failovertest.RateLimited(2*time.Second))
	d.srv.Script(revokedKey, failovertest.Error(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key",
		"Incorrect API key provided: "+revokedKey+"."))
	d.srv.Script(paidKey, answer("paid"))
	if err := chat("failover", "paid"); err != nil {
		return err
	}
	// Both out of rotation: the next call goes straight to the paid key.
	if err := chat("fallback", "paid"); err != nil {
		return err
	}
	// A stream, served by the paid key too.
	d.srv.Script(paidKey, failovertest.Stream("streamed ", "by ", "paid"))
	if err := d.stream(ctx, req, "paid"); err != nil {
		return err
	}
	d.srv.Script(paidKey, answer("paid"))

	// Ten minutes on, the free key's cooldown is over: a probe recovers it.
	d.clock.advance(10 * time.Minute)
	d.srv.Script(freeKey, answer("free"))
	if err := chat("probe", "free"); err != nil {
		return err
	}
	// The free key is slow: after hedgeDelay the paid key starts too and
	// wins; the free key's attempt is canceled.
	d.srv.Script(freeKey, failovertest.Response{Delay: time.Hour})
	if err := chat("hedge", "paid"); err != nil {
		return err
	}
	// The free key is rate limited again, and the retry budget (10% of
	// the calls plus 3) is spent: the call fails fast.
	d.srv.Script(freeKey, failovertest.RateLimited(time.Second))
	if err := chat("retry budget", ""); err != nil {
		return err
	}
	// The paid key fails while the others are out: no member serves.
	d.srv.Script(paidKey, failovertest.Error(http.StatusInternalServerError, "server_error", "", "The server had an error."))
	return chat("outage", "")
}

// stream reads a chat stream to its end and checks who served it.
func (d *demo) stream(ctx context.Context, req openai.ChatCompletionRequest, want string) error {
	st, err := d.client.CreateChatCompletionStream(ctx, req)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	defer func() { _ = st.Close() }()
	var text strings.Builder
	for {
		chunk, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("stream: %w", err)
		}
		if len(chunk.Choices) > 0 {
			text.WriteString(chunk.Choices[0].Delta.Content)
		}
	}
	if st.Member() != want || text.String() != "streamed by "+want {
		return fmt.Errorf("stream: %q from %s, want it from %s", text.String(), st.Member(), want)
	}
	return nil
}
