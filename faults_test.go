package failover_test

// The permanent fault suite of issue 14: real loopback HTTP against
// internal/faultserver, through the go-openai client (plain and stream) and
// through Transport (plain and SSE), with a healthy member behind every
// faulty one. Subtests are named mode/path, so that one case runs alone:
//
//	go test -race -count=1 -run 'TestFaultModes/huge_body/openai$' -v .
//
// TestFaultModes runs its cases one after another: each measures the
// process's goroutines, and the huge-body cases its heap.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/internal/faultserver"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	faultAttempt = 300 * time.Millisecond // WithAttemptTimeout of the pools
	// faultHugeAttempt is the attempt timeout of the huge modes: long
	// enough to read the whole huge body or line, so that a bounded heap
	// owes nothing to a timeout cutting the read short.
	faultHugeAttempt = 2 * time.Second
	faultMargin      = 2 * time.Second // real network: a bound, not a benchmark
	// faultPastBound is how far past attempt + margin the caller's deadline
	// is, so that a call held longer than the bound shows as such.
	faultPastBound = 700 * time.Millisecond
	faultHuge      = 256 << 20 // bytes of a huge body or SSE line
	faultHeapBound = 64 << 20  // peak HeapInuse above the case's start
)

// The ways a call is driven.
const (
	pathOpenAI       = "openai"        // (*failover.OpenAI).CreateChatCompletion
	pathOpenAIStream = "openai_stream" // CreateChatCompletionStream, Recv until the end
	pathTransport    = "transport"     // http.Client over failover.Transport, plain POST, body read (1 MiB at most)
	pathTransportSSE = "transport_sse" // the same with "stream": true, body read to the end
)

var faultPaths = []string{pathOpenAI, pathOpenAIStream, pathTransport, pathTransportSSE}

// faultOutcome is what the caller saw; an expectation ORs those allowed.
type faultOutcome int

const (
	// onHealthy: the fault member failed, the call failed over, and the
	// healthy member served it correctly.
	onHealthy faultOutcome = 1 << iota
	// onFault: the fault member served the call correctly (its answer was
	// legal) and the healthy member was not called.
	onFault
	// onCut: the fault member's answer reached the caller (headers, or a
	// stream's first chunk) and then ended in an error the caller sees:
	// not a clean end, nothing from the healthy member.
	onCut
	// onPassthrough: Transport handed the fault member's 200 to the caller
	// as is; it is not the JSON the caller asked for, and the caller's
	// decoder rejects it.
	onPassthrough
	// onError: the call failed with a *failover.Error (for Transport, an
	// error response).
	onError
	// onOther: anything else, such as a clean end of a stream without
	// [DONE], or an error that is not a *failover.Error.
	onOther
)

func (o faultOutcome) String() string {
	names := []string{"healthy", "fault_ok", "cut", "passthrough", "error", "other"}
	var out []string
	for i, n := range names {
		if o&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "|")
}

// faultExpect is the right behaviour of one mode on one path.
type faultExpect struct {
	want faultOutcome
	// reasons are the classifications allowed for the fault member's
	// failed attempt (from EventAttemptFailed); nil: not checked.
	reasons []failover.Reason
	// cutErr, if set, is what the read error of an onCut outcome must match
	// (errors.Is).
	cutErr error
}

// faultExpectations decides, per mode and path, what is right, and why.
func faultExpectations() map[faultserver.Mode]map[string]faultExpect {
	all := func(e faultExpect) map[string]faultExpect {
		return map[string]faultExpect{pathOpenAI: e, pathOpenAIStream: e, pathTransport: e, pathTransportSSE: e}
	}
	R := func(rs ...failover.Reason) []failover.Reason { return rs }
	network, timeout := failover.ReasonNetwork, failover.ReasonTimeout
	return map[faultserver.Mode]map[string]faultExpect{
		// The control: a correct answer is served by the first member.
		faultserver.Healthy: all(faultExpect{want: onFault}),
		// Nothing of a response arrived: a network failure on every path,
		// and the next member serves (issue 14 #1: the stream open's EOF
		// is not an empty stream).
		faultserver.CloseBeforeResponse: all(faultExpect{want: onHealthy, reasons: R(network)}),
		// go-openai reads the whole body (plain) or the first chunk
		// (stream) inside the attempt, so the reset fails over. Transport
		// returns a response at its headers by design: the reset then
		// reaches the caller from Read; if the reset wins the race with the
		// headers, the call fails over instead. Both are right.
		faultserver.ResetMidBody: {
			pathOpenAI:       {want: onHealthy, reasons: R(network)},
			pathOpenAIStream: {want: onHealthy, reasons: R(network)},
			pathTransport:    {want: onHealthy | onCut, reasons: R(network)},
			pathTransportSSE: {want: onHealthy | onCut, reasons: R(network)},
		},
		// Reading a (capped) error body is part of the attempt: the
		// attempt timeout ends it and the call fails over (issue 14 #3).
		faultserver.TrickleError: all(faultExpect{want: onHealthy, reasons: R(timeout, failover.ReasonServer)}),
		// At most 64 KiB of an error body is read, on every path (#2).
		faultserver.HugeBody: all(faultExpect{want: onHealthy, reasons: R(failover.ReasonServer)}),
		// A 200 event stream that is one endless line. go-openai's plain
		// path fails to decode it (a decode error is unknown, which fails
		// over); its stream path must not buffer the line (bounded heap)
		// and fails over before the first chunk. Transport passes a 200
		// through as it arrives: a plain caller's decoder rejects it (or,
		// since it is a completion event stream, its Read fails), a stream
		// caller sees the stream end without [DONE] or too long a line: an
		// error, never a clean end.
		faultserver.HugeSSELine: {
			pathOpenAI:       {want: onHealthy, reasons: R(failover.ReasonUnknown, failover.ReasonServer)},
			pathOpenAIStream: {want: onHealthy, reasons: R(failover.ReasonServer, network, timeout)},
			pathTransport:    {want: onPassthrough | onCut},
			pathTransportSSE: {want: onCut},
		},
		// Chunks were delivered, then the stream ended without the event
		// data: [DONE] (a chunk's text contains "[DONE]", #6): the caller
		// has seen output, so nothing can fail over; the end must surface
		// as io.ErrUnexpectedEOF, on the go-openai stream and from
		// Transport's body (contract). go-openai's plain path cannot decode
		// an event stream: unknown, fails over. Transport may hand a plain
		// caller the event stream as is, or mark its cut end too.
		faultserver.NoDone: {
			pathOpenAI:       {want: onHealthy, reasons: R(failover.ReasonUnknown)},
			pathOpenAIStream: {want: onCut, cutErr: io.ErrUnexpectedEOF},
			pathTransport:    {want: onPassthrough | onCut},
			pathTransportSSE: {want: onCut, cutErr: io.ErrUnexpectedEOF},
		},
		faultserver.StallBeforeHeaders: all(faultExpect{want: onHealthy, reasons: R(timeout)}),
		// go-openai waits for the body (plain) or the first chunk (stream)
		// inside the attempt: a timeout, fails over. Transport waits for an
		// event stream's first event inside the attempt too (it fails over
		// when that event is an error), so a stream that stalls after its
		// headers fails over; a plain body's attempt ends at the headers
		// by design, so the stalled body is bounded by the caller's context
		// only.
		faultserver.StallAfterHeaders: {
			pathOpenAI:       {want: onHealthy, reasons: R(timeout)},
			pathOpenAIStream: {want: onHealthy, reasons: R(timeout)},
			pathTransport:    {want: onCut, cutErr: context.DeadlineExceeded},
			pathTransportSSE: {want: onHealthy, reasons: R(timeout)},
		},
		// Not HTTP at all: a network failure, as the table's "EOF, reset".
		faultserver.Garbage: all(faultExpect{want: onHealthy, reasons: R(network)}),
		// A proxy's HTML page with 200. go-openai's plain path fails to
		// decode it (unknown, fails over); a stream request answered so
		// ends without [DONE] before any chunk, so it fails over. Transport
		// passes a 200 through to a plain caller; a stream caller must see
		// an error, not a clean empty stream (or the call fails over).
		faultserver.WrongContentType: {
			pathOpenAI:       {want: onHealthy, reasons: R(failover.ReasonUnknown)},
			pathOpenAIStream: {want: onHealthy, reasons: R(network, failover.ReasonServer, failover.ReasonUnknown)},
			pathTransport:    {want: onPassthrough},
			pathTransportSSE: {want: onCut | onHealthy},
		},
		// HTTP/1.0 without Content-Length is legal: the answer is served.
		faultserver.HTTP10CloseDelimited: all(faultExpect{want: onFault}),
	}
}

// faultObs is what one case observed.
type faultObs struct {
	outcome  faultOutcome
	err      error // of the call
	readErr  error // of reading the answer after the call returned
	status   int   // Transport: the response status
	text     string
	elapsed  time.Duration // until the call returned
	total    time.Duration // until the answer was read to its end
	panicked any
	stack    string
	detail   string
}

// faultRig is one case's servers, clients and pool.
type faultRig struct {
	fault, healthy *faultserver.Server
	trs            []*http.Transport // the members' own connections
	attempt        time.Duration
	ev             events
}

func (r *faultRig) transport() *http.Transport {
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 5 * time.Second}
	r.trs = append(r.trs, tr)
	return tr
}

func (r *faultRig) closeAll() {
	for _, tr := range r.trs {
		tr.CloseIdleConnections()
	}
	r.fault.Close()
	r.healthy.Close()
}

// failedReasons are the reasons of the fault member's failed attempts.
func (r *faultRig) failedReasons() []failover.Reason {
	r.ev.mu.Lock()
	defer r.ev.mu.Unlock()
	var out []failover.Reason
	for _, e := range r.ev.all {
		if e.Kind == failover.EventAttemptFailed && e.Member == "fault" {
			out = append(out, e.Reason)
		}
	}
	return out
}

func (r *faultRig) servedBy(ok bool) faultOutcome {
	switch {
	case !ok:
		return onOther
	case r.healthy.Calls() > 0:
		return onHealthy
	default:
		return onFault
	}
}

func (r *faultRig) openAI(t *testing.T) *failover.OpenAI {
	member := func(name, key string, srv *faultserver.Server, prio int) failover.Member[*openai.Client] {
		cfg := openai.DefaultConfig(key)
		cfg.BaseURL = srv.BaseURL()
		cfg.HTTPClient = &http.Client{Transport: r.transport()}
		m := failover.OpenAIMember(name, cfg)
		m.Priority = prio
		return m
	}
	p, err := failover.New([]failover.Member[*openai.Client]{
		member("fault", "sk-fault-0123456789abcdef", r.fault, 0),
		member("healthy", "sk-healthy-0123456789abcdef", r.healthy, 1),
	}, failover.WithAttemptTimeout(r.attempt), failover.WithObserver(r.ev.observe))
	require.NoError(t, err)
	return failover.NewOpenAI(p)
}

func (r *faultRig) transportPool(t *testing.T) (*http.Client, *failover.Pool[failover.Upstream]) {
	p, err := failover.New([]failover.Member[failover.Upstream]{
		{Name: "fault", Client: failover.Upstream{BaseURL: r.fault.BaseURL(), Key: "sk-fault-0123456789abcdef", Transport: r.transport()}},
		{Name: "healthy", Priority: 1, Client: failover.Upstream{BaseURL: r.healthy.BaseURL(), Key: "sk-healthy-0123456789abcdef", Transport: r.transport()}},
	}, failover.WithAttemptTimeout(r.attempt), failover.WithObserver(r.ev.observe))
	require.NoError(t, err)
	return &http.Client{Transport: failover.NewTransport(p)}, p
}

// TestFaultModes drives every fault mode through every path, with a
// healthy member behind: no panic; the call is served by the healthy
// member, or the outcome the mode's expectation allows; within the attempt
// timeout plus a margin; a bounded heap for the huge modes; no goroutine
// left behind; no member left in flight or probing.
func TestFaultModes(t *testing.T) {
	exp := faultExpectations()
	modes := append([]faultserver.Mode{faultserver.Healthy}, faultserver.Faults()...)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			for _, path := range faultPaths {
				t.Run(path, func(t *testing.T) { runFaultCase(t, mode, path, exp[mode][path]) })
			}
		})
	}
}

func runFaultCase(t *testing.T, mode faultserver.Mode, path string, want faultExpect) {
	require.NotZero(t, want.want, "no expectation for %s/%s", mode, path)
	huge := mode == faultserver.HugeBody || mode == faultserver.HugeSSELine
	runtime.GC()
	baseG := runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapInuse

	rig := &faultRig{
		fault:   faultserver.Start(faultserver.Config{Mode: mode, HugeSize: faultHuge}),
		healthy: faultserver.New(faultserver.Healthy),
		attempt: faultAttempt,
	}
	if huge {
		rig.attempt = faultHugeAttempt
	}
	bound := rig.attempt + faultMargin // for the call to return
	caller := bound + faultPastBound   // the caller's deadline
	defer rig.closeAll()               // again, if the case stops early
	var statuses func() []failover.Status
	var drive func(ctx context.Context) faultObs
	switch path {
	case pathOpenAI, pathOpenAIStream:
		client := rig.openAI(t)
		statuses = client.Pool().Status
		drive = func(ctx context.Context) faultObs { return driveOpenAI(ctx, rig, client, path == pathOpenAIStream) }
	default:
		hc, p := rig.transportPool(t)
		statuses = p.Status
		drive = func(ctx context.Context) faultObs { return driveTransport(ctx, rig, hc, path == pathTransportSSE) }
	}

	var heap *heapSampler
	if huge {
		heap = sampleHeap(5 * time.Millisecond)
	}
	// The caller's context stays alive until the goroutines are counted: the
	// library must not need a canceled context to clean up after a call.
	ctx, cancel := context.WithTimeout(context.Background(), caller)
	defer cancel()
	done := make(chan faultObs, 1)
	go func() { done <- drive(ctx) }()
	var obs faultObs
	hard := time.NewTimer(caller + 5*time.Second)
	select {
	case obs = <-done:
	case <-hard.C:
		t.Errorf("the call did not end %v after the caller's deadline; goroutines:\n%s", 5*time.Second, goroutineSummary())
		cancel()
		rig.closeAll()
		select {
		case obs = <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("the call is still running after its servers closed")
		}
	}
	hard.Stop()
	if heap != nil {
		peak := heap.stop()
		mib := float64(peak-min(peak, baseHeap)) / (1 << 20)
		t.Logf("heap-peak mode=%s path=%s MiB=%.1f abs_MiB=%.1f", mode, path, mib, float64(peak)/(1<<20))
		assert.LessOrEqual(t, peak-min(peak, baseHeap), uint64(faultHeapBound), "peak HeapInuse above the start")
	}
	reasons := rig.failedReasons()
	t.Logf("case mode=%s path=%s outcome=%s want=%s elapsed=%v total=%v reasons=%v fault_calls=%d healthy_calls=%d status=%d err=%q read_err=%q %s",
		mode, path, obs.outcome, want.want, obs.elapsed.Round(time.Millisecond), obs.total.Round(time.Millisecond), reasons,
		rig.fault.Calls(), rig.healthy.Calls(), obs.status, errText(obs.err), errText(obs.readErr), obs.detail)

	if obs.panicked != nil {
		t.Errorf("panic: %v\n%s", obs.panicked, obs.stack)
	}
	assert.True(t, obs.outcome&want.want != 0, "outcome %s, want %s (%s)", obs.outcome, want.want, obs.detail)
	assert.LessOrEqual(t, obs.elapsed, bound, "the call returned within the attempt timeout plus margin")
	assert.LessOrEqual(t, obs.total, caller+faultMargin, "the answer ended within the caller's deadline plus margin")
	assert.Equal(t, 1, rig.fault.Calls(), "the fault member is called exactly once")
	if obs.outcome == onHealthy {
		assert.Equal(t, 1, rig.healthy.Calls(), "the healthy member is called once")
		if len(reasons) != 1 {
			t.Errorf("%d failed attempts of the fault member, want 1", len(reasons))
		} else if want.reasons != nil {
			assert.Contains(t, want.reasons, reasons[0], "classification of the fault member's failure")
		}
	}
	if obs.outcome == onCut && want.cutErr != nil {
		assert.ErrorIs(t, obs.readErr, want.cutErr, "the cut surfaces as")
	}
	for _, s := range statuses() {
		assert.Zero(t, s.InFlight, "member %s in flight after the call", s.Name)
		assert.NotEqual(t, failover.Probing, s.State, "member %s probing after the call", s.Name)
	}

	rig.closeAll()
	assert.Zero(t, rig.fault.Active(), "fault server handlers still running after Close")
	if heap != nil {
		runtime.GC()
	}
	waitGoroutines(t, baseG, 2*time.Second)
}

// driveOpenAI makes one call through the go-openai client.
func driveOpenAI(ctx context.Context, rig *faultRig, client *failover.OpenAI, stream bool) (obs faultObs) {
	start := time.Now()
	defer catchPanic(&obs)
	defer func() {
		if obs.total == 0 {
			obs.total = time.Since(start)
		}
	}()
	if !stream {
		resp, err := client.CreateChatCompletion(ctx, chatReq)
		obs.elapsed, obs.total = time.Since(start), time.Since(start)
		if err != nil {
			obs.err, obs.outcome = err, errOutcome(err)
			return obs
		}
		if len(resp.Choices) > 0 {
			obs.text = resp.Choices[0].Message.Content
		}
		obs.outcome = rig.servedBy(obs.text == faultserver.Content)
		obs.detail = fmt.Sprintf("text=%q", obs.text)
		return obs
	}
	s, err := client.CreateChatCompletionStream(ctx, chatReq)
	obs.elapsed = time.Since(start)
	if err != nil {
		obs.err, obs.outcome, obs.total = err, errOutcome(err), obs.elapsed
		return obs
	}
	defer func() { // Close may panic too (issue 14 #1): the case goes on
		defer func() { _ = recover() }()
		_ = s.Close()
	}()
	var b strings.Builder
	for {
		r, err := s.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				obs.readErr = err
			}
			break
		}
		for _, c := range r.Choices {
			b.WriteString(c.Delta.Content)
		}
	}
	obs.total, obs.text = time.Since(start), b.String()
	obs.detail = fmt.Sprintf("member=%s text=%q", s.Member(), obs.text)
	switch {
	case obs.readErr != nil && rig.healthy.Calls() == 0:
		obs.outcome = onCut
	case obs.readErr != nil:
		obs.outcome = onOther
	default:
		obs.outcome = rig.servedBy(obs.text == faultserver.Content)
		if obs.outcome == onOther {
			obs.detail += " (a clean end with the wrong text)"
		}
	}
	return obs
}

// driveTransport makes one call through an http.Client over Transport.
func driveTransport(ctx context.Context, rig *faultRig, hc *http.Client, stream bool) (obs faultObs) {
	start := time.Now()
	defer catchPanic(&obs)
	defer func() {
		if obs.total == 0 {
			obs.total = time.Since(start)
		}
	}()
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`
	if stream {
		body = `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello"}]}`
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://failover.invalid/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	resp, err := hc.Do(req)
	obs.elapsed = time.Since(start)
	if err != nil {
		obs.err, obs.outcome, obs.total = err, errOutcome(err), obs.elapsed
		return obs
	}
	defer resp.Body.Close()
	obs.status = resp.StatusCode
	ct := resp.Header.Get("Content-Type")
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		obs.total, obs.outcome = time.Since(start), onError
		obs.detail = fmt.Sprintf("content_type=%q body=%q", ct, b)
		return obs
	}
	if !stream {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		obs.total, obs.readErr = time.Since(start), err
		var cc openai.ChatCompletionResponse
		decoded := json.Unmarshal(b, &cc) == nil && len(cc.Choices) > 0
		if decoded {
			obs.text = cc.Choices[0].Message.Content
		}
		obs.detail = fmt.Sprintf("content_type=%q read=%d", ct, len(b))
		switch {
		case err != nil && rig.healthy.Calls() == 0:
			obs.outcome = onCut
		case err != nil:
			obs.outcome = onOther
		case decoded:
			obs.outcome = rig.servedBy(obs.text == faultserver.Content)
		case rig.healthy.Calls() == 0:
			obs.outcome = onPassthrough
		default:
			obs.outcome = onOther
		}
		return obs
	}
	var sink sseSink
	n, err := io.Copy(&sink, resp.Body)
	obs.total, obs.readErr = time.Since(start), err
	obs.text = sink.text()
	obs.detail = fmt.Sprintf("content_type=%q read=%d done_event=%v", ct, n, sink.done())
	switch {
	case err != nil && rig.healthy.Calls() == 0:
		obs.outcome = onCut
	case err != nil:
		obs.outcome = onOther
	case sink.done():
		obs.outcome = rig.servedBy(obs.text == faultserver.Content)
	default:
		obs.outcome = onOther
		obs.detail += " (a clean end without data: [DONE])"
	}
	return obs
}

// errOutcome is onError for a *failover.Error, onOther for any other error.
func errOutcome(err error) faultOutcome {
	var fe *failover.Error
	if errors.As(err, &fe) {
		return onError
	}
	return onOther
}

func catchPanic(obs *faultObs) {
	if v := recover(); v != nil {
		obs.panicked, obs.stack, obs.outcome = v, panicSite(debug.Stack()), onOther
	}
}

// panicSite returns the frames from the one that panicked, a few deep.
func panicSite(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "panic(") {
			end := min(i+2+8, len(lines))
			return strings.Join(lines[i+2:end], "\n")
		}
	}
	return string(stack)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// sseSink keeps the first 64 KiB of an event stream and counts the rest.
type sseSink struct{ head bytes.Buffer }

func (s *sseSink) Write(p []byte) (int, error) {
	if room := 64<<10 - s.head.Len(); room > 0 {
		s.head.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (s *sseSink) lines() []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(s.head.Bytes()))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
			out = append(out, strings.TrimSpace(d))
		}
	}
	return out
}

func (s *sseSink) done() bool {
	for _, l := range s.lines() {
		if l == "[DONE]" {
			return true
		}
	}
	return false
}

func (s *sseSink) text() string {
	var b strings.Builder
	for _, l := range s.lines() {
		var c openai.ChatCompletionStreamResponse
		if json.Unmarshal([]byte(l), &c) == nil {
			for _, ch := range c.Choices {
				b.WriteString(ch.Delta.Content)
			}
		}
	}
	return b.String()
}

// heapSampler records the peak HeapInuse while it runs.
type heapSampler struct {
	quit chan struct{}
	done chan struct{}
	peak atomic.Uint64
}

func sampleHeap(every time.Duration) *heapSampler {
	h := &heapSampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		limit := time.NewTimer(time.Minute) // bounded even if never stopped
		defer limit.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
			select {
			case <-h.quit:
				return
			case <-limit.C:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) stop() uint64 {
	close(h.quit)
	<-h.done
	return h.peak.Load()
}

// waitGoroutines waits until the process is back to base goroutines.
func waitGoroutines(t *testing.T, base int, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines %v after the case, %d before:\n%s", n, bound, base, goroutineSummary())
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goroutineSummary lists the goroutines by their top frame in this module
// or the standard library, with counts, skipping the test runner's own.
func goroutineSummary() string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		if len(lines) < 3 || strings.Contains(g, "testing.tRunner") || strings.Contains(g, "goroutineSummary") {
			continue
		}
		key := strings.TrimSpace(lines[1])
		for i := 1; i+1 < len(lines); i += 2 { // the first frame outside runtime and sync
			f := strings.TrimSpace(lines[i])
			if !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "sync.") && !strings.HasPrefix(f, "internal/") {
				key = f + " @ " + strings.TrimSpace(lines[i+1])
				break
			}
		}
		if i := strings.LastIndex(g, "created by "); i >= 0 {
			key += "  [" + strings.SplitN(g[i:], "\n", 2)[0] + "]"
		}
		counts[key]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %d × %s\n", counts[k], k)
	}
	return b.String()
}

// ---------------------------------------------------------------------
// Callbacks that panic or block, under concurrency.

// faultPanic is the value every deliberate panic of TestFaultCallbacks
// carries; any other value that reaches a caller is the library's own.
type faultPanic string

// panickyHandler is a slog.Handler whose Handle panics when fire says so.
type panickyHandler struct{ fire func() bool }

func (h panickyHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h panickyHandler) Handle(context.Context, slog.Record) error {
	if h.fire() {
		panic(faultPanic("slog handler"))
	}
	return nil
}
func (h panickyHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panickyHandler) WithGroup(string) slog.Handler      { return h }

// TestFaultCallbacks runs 16 goroutines of calls against a pool whose
// callbacks panic (fn, the observer on each event kind, the classifier, the
// slog handler) or block (the observer), with and without hedging. Every
// panic reaches the caller that made the call, with its own value; after
// the storm no member is in flight or probing, and the MaxInFlight 2 member
// still serves two calls at once.
func TestFaultCallbacks(t *testing.T) {
	type scenario struct {
		name string
		opts func(fire func() bool, blocked func()) []failover.Option
		fn   bool // fn itself panics
	}
	observerOn := func(kind failover.EventKind) func(func() bool, func()) []failover.Option {
		return func(fire func() bool, _ func()) []failover.Option {
			return []failover.Option{failover.WithObserver(func(ev failover.Event) {
				if ev.Kind == kind && fire() {
					panic(faultPanic("observer " + kind.String()))
				}
			})}
		}
	}
	scenarios := []scenario{
		{name: "fn", fn: true, opts: func(func() bool, func()) []failover.Option { return nil }},
		{name: "observer_attempt_failed", opts: observerOn(failover.EventAttemptFailed)},
		{name: "observer_cooldown", opts: observerOn(failover.EventCooldown)},
		{name: "observer_probe", opts: observerOn(failover.EventProbe)},
		{name: "observer_recovered", opts: observerOn(failover.EventRecovered)},
		{name: "observer_exhausted", opts: observerOn(failover.EventExhausted)},
		{name: "observer_hedge", opts: observerOn(failover.EventHedge)},
		{name: "classifier", opts: func(fire func() bool, _ func()) []failover.Option {
			return []failover.Option{failover.WithClassifier(func(error) (failover.Verdict, bool) {
				if fire() {
					panic(faultPanic("classifier"))
				}
				return failover.Verdict{}, false
			})}
		}},
		{name: "slog_handler", opts: func(fire func() bool, _ func()) []failover.Option {
			return []failover.Option{failover.WithLogger(slog.New(panickyHandler{fire: fire}))}
		}},
		{name: "blocking_observer", opts: func(_ func() bool, blocked func()) []failover.Option {
			return []failover.Option{failover.WithObserver(func(ev failover.Event) {
				if ev.Kind == failover.EventCooldown {
					blocked()
				}
			})}
		}},
	}
	for _, sc := range scenarios {
		for _, variant := range []string{"plain", "hedge"} {
			if sc.name == "observer_hedge" && variant == "plain" {
				continue // no hedge events without hedging
			}
			t.Run(sc.name+"/"+variant, func(t *testing.T) {
				t.Parallel()
				synctest.Test(t, func(t *testing.T) {
					runCallbackStorm(t, sc.opts, sc.fn, variant == "hedge", sc.name == "blocking_observer")
				})
			})
		}
	}
}

func runCallbackStorm(t *testing.T, opts func(fire func() bool, blocked func()) []failover.Option, fnPanics, hedge, blocking bool) {
	const workers, calls = 16, 25
	var (
		armed    atomic.Bool
		fired    atomic.Int64
		release  = make(chan struct{})
		blockedN atomic.Int64
	)
	armed.Store(true)
	fire := func() bool { return armed.Load() && fired.Add(1)%2 == 1 }
	blocked := func() { // the first few cooldown events block until released, a minute at most
		if !armed.Load() || blockedN.Add(1) > 3 {
			return
		}
		select {
		case <-release:
		case <-time.After(time.Minute):
		}
	}
	lim := &fakeClient{delay: 30 * time.Millisecond}
	flaky := &fakeClient{delay: 20 * time.Millisecond}
	steady := &fakeClient{delay: 10 * time.Millisecond}
	lim.fail = func(n int64) error {
		if armed.Load() && n%3 == 0 {
			return apiErr(500, "server_error", "boom")
		}
		return nil
	}
	flaky.fail = func(n int64) error {
		if armed.Load() && n%2 == 0 {
			return apiErr(429, "rate_limit_exceeded", "slow down")
		}
		return nil
	}
	steady.fail = func(n int64) error {
		if armed.Load() && n%4 == 0 {
			return apiErr(503, nil, "overloaded")
		}
		return nil
	}
	cd := exact()
	cd.Transient.Base, cd.Transient.Max = 200*time.Millisecond, time.Second
	o := []failover.Option{failover.WithCooldowns(cd), failover.WithMaxAttempts(2)}
	if hedge {
		o = append(o, failover.WithHedge(15*time.Millisecond))
	}
	o = append(o, opts(fire, blocked)...)
	p, err := failover.New([]failover.Member[*fakeClient]{
		{Name: "lim", Client: lim, Limits: failover.Limits{MaxInFlight: 2}},
		{Name: "flaky", Client: flaky},
		{Name: "steady", Client: steady, Priority: 1},
	}, o...)
	require.NoError(t, err)
	fn := call
	if fnPanics {
		var n atomic.Int64
		fn = func(ctx context.Context, m failover.Member[*fakeClient]) (string, error) {
			if armed.Load() && n.Add(1)%4 == 0 {
				panic(faultPanic("fn on " + m.Name))
			}
			return call(ctx, m)
		}
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		panics   int
		foreign  []string
		finished atomic.Int64 // workers done with all their calls
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				func() {
					defer func() {
						if v := recover(); v != nil {
							mu.Lock()
							defer mu.Unlock()
							if _, ok := v.(faultPanic); ok {
								panics++
							} else if len(foreign) < 3 {
								foreign = append(foreign, fmt.Sprintf("%v\n%s", v, panicSite(debug.Stack())))
							}
						}
					}()
					_, _ = failover.Do(context.Background(), p, fn)
				}()
				time.Sleep(time.Duration(7*(w+1)+i) * time.Millisecond)
			}
			finished.Add(1)
		}()
	}
	if blocking {
		time.Sleep(20 * time.Second) // the calls take about 5 s; the observers block for a minute at most
		synctest.Wait()
		n := min(blockedN.Load(), 3)
		assert.Positive(t, n, "an observer blocked")
		assert.Equal(t, int64(workers)-n, finished.Load(),
			"every worker but those whose observer blocks has finished: the observer runs outside locks")
		close(release)
	}
	wg.Wait()
	armed.Store(false)
	synctest.Wait()
	mu.Lock()
	t.Logf("panics recovered by callers: %d; foreign: %d", panics, len(foreign))
	for _, f := range foreign {
		t.Errorf("a panic that is not the callback's: %s", f)
	}
	if !blocking {
		assert.Positive(t, panics, "the callbacks panicked and the callers recovered it")
	}
	mu.Unlock()

	for _, s := range p.Status() {
		assert.Zero(t, s.InFlight, "member %s in flight after the storm", s.Name)
		assert.NotEqual(t, failover.Probing, s.State, "member %s stuck probing", s.Name)
	}

	// The MaxInFlight 2 member still takes two calls at once (the others
	// fail, so that a hedge cannot win).
	for _, name := range []string{"lim", "flaky", "steady"} {
		require.NoError(t, p.Enable(name))
	}
	hold := make(chan struct{})
	var inLim atomic.Int64
	got := make(chan string, 2)
	for range 2 {
		go func() {
			v, err := failover.Do(context.Background(), p, func(ctx context.Context, m failover.Member[*fakeClient]) (string, error) {
				if m.Name != "lim" {
					return "", apiErr(500, "server_error", "not this one")
				}
				inLim.Add(1)
				select {
				case <-hold:
					return "lim", nil
				case <-ctx.Done():
					return "", ctx.Err()
				}
			})
			if err != nil {
				v = err.Error()
			}
			got <- v
		}()
	}
	synctest.Wait()
	assert.Equal(t, int64(2), inLim.Load(), "the MaxInFlight 2 member serves two calls at once")
	close(hold)
	assert.Equal(t, "lim", <-got)
	assert.Equal(t, "lim", <-got)
	v, err := failover.Do(context.Background(), p, call)
	require.NoError(t, err)
	assert.Equal(t, "lim", v)
}

// ---------------------------------------------------------------------
// Secrets of unknown shape, echoed by the upstream, on real HTTP.

// faultCanary is a secret of no known shape: 32 random letters and digits.
func faultCanary() string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 32)
	for i := range b {
		b[i] = alnum[rand.IntN(len(alnum))]
	}
	return string(b)
}

// TestFaultCanarySecrets puts a canary in every place a pool holds a
// secret (OpenAIKeys keys, an OpenAIMember's Azure key, Upstream.Key in
// each Auth mode, an Upstream.Header credential) against a fault server
// that echoes the credentials it receives in the error's message, param
// and body and in a response header, or that breaks the connection (the
// URL of the error then carries an AuthQuery key). No canary may appear in
// (*Error).Error(), the errors the caller gets (a stream's Recv too),
// Status, StatusHandler, events or slog records, nor in an error response
// Transport hands back. A successful stream that Transport passes through
// untouched is the provider's answer to the caller, not text of the pool,
// and is not checked.
func TestFaultCanarySecrets(t *testing.T) {
	modes := []struct {
		name string
		cfg  faultserver.Config
	}{
		{"echo_401", faultserver.Config{Mode: faultserver.Echo, EchoStatus: 401}},
		{"echo_500", faultserver.Config{Mode: faultserver.Echo, EchoStatus: 500}},
		{"echo_400", faultserver.Config{Mode: faultserver.Echo, EchoStatus: 400}}, // a stop reason: the error comes back as is
		{"echo_stream_error", faultserver.Config{Mode: faultserver.Echo, EchoStatus: 200}},
		{"close_before_response", faultserver.Config{Mode: faultserver.CloseBeforeResponse}},
		{"garbage", faultserver.Config{Mode: faultserver.Garbage}},
	}
	for _, mode := range modes {
		for _, path := range faultPaths {
			t.Run(mode.name+"/"+path, func(t *testing.T) {
				t.Parallel()
				srv := faultserver.Start(mode.cfg)
				defer srv.Close()
				healthy := faultserver.New(faultserver.Healthy)
				defer healthy.Close()
				tr := &http.Transport{}
				defer tr.CloseIdleConnections()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var x texts
				var canaries []string
				switch path {
				case pathOpenAI, pathOpenAIStream:
					canaries = canaryOpenAI(ctx, t, &x, srv, healthy, tr, path == pathOpenAIStream)
				default:
					canaries = canaryTransport(ctx, t, &x, srv, healthy, tr, path == pathTransportSSE)
				}
				assertNoCanary(t, x.all, canaries...)
			})
		}
	}
}

// canaryOpenAI makes calls through two go-openai pools (the fault members
// with a healthy one behind, and alone) and gathers every text.
func canaryOpenAI(ctx context.Context, t *testing.T, x *texts, srv, healthy *faultserver.Server, tr http.RoundTripper, stream bool) []string {
	k1, k2, kAzure, kHealthy := faultCanary(), faultCanary(), faultCanary(), faultCanary()
	keys := func(base string) func(string) openai.ClientConfig {
		return func(key string) openai.ClientConfig {
			c := openai.DefaultConfig(key)
			c.BaseURL, c.HTTPClient = base, &http.Client{Transport: tr}
			return c
		}
	}
	azure := openai.DefaultAzureConfig(kAzure, srv.URL)
	azure.HTTPClient = &http.Client{Transport: tr}
	faulty := func() []failover.Member[*openai.Client] {
		return append(failover.OpenAIKeys("openai", keys(srv.BaseURL()), k1, k2), failover.OpenAIMember("azure", azure))
	}
	good := failover.OpenAIMember("healthy", keys(healthy.BaseURL())(kHealthy))
	good.Priority = 1
	for _, ms := range [][]failover.Member[*openai.Client]{append(faulty(), good), faulty()} {
		var px texts
		p, err := failover.New(ms, append(px.options(), failover.WithAttemptTimeout(2*time.Second))...)
		require.NoError(t, err)
		client := failover.NewOpenAI(p)
		if !stream {
			_, err := client.CreateChatCompletion(ctx, chatReq)
			px.add(err)
		} else {
			s, err := client.CreateChatCompletionStream(ctx, chatReq)
			px.add(err)
			if err == nil {
				px.add(drainStream(t, s))
			}
		}
		x.all = append(x.all, collect(t, &px, p)...)
	}
	require.Positive(t, srv.Calls())
	return []string{k1, k2, kAzure, kHealthy}
}

// drainStream reads s to its end and closes it; it returns the error
// that ended it, if not io.EOF. A panic (issue 14 #1) fails the test, not
// the binary.
func drainStream(t *testing.T, s *failover.ChatStream) (err error) {
	t.Helper()
	defer func() {
		if v := recover(); v != nil {
			t.Errorf("stream panicked: %v\n%s", v, panicSite(debug.Stack()))
		}
	}()
	defer func() { _ = s.Close() }()
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// canaryTransport does the same through Transport, with a member per Auth
// mode, each with its own Upstream.Header credential.
func canaryTransport(ctx context.Context, t *testing.T, x *texts, srv, healthy *faultserver.Server, tr http.RoundTripper, stream bool) []string {
	auths := []failover.Auth{failover.AuthBearer, failover.AuthAPIKey, failover.AuthXAPIKey, failover.AuthGoogKey, failover.AuthQuery}
	var canaries []string
	var faulty []failover.Member[failover.Upstream]
	for i, a := range auths {
		key, hdr := faultCanary(), faultCanary()
		canaries = append(canaries, key, hdr)
		faulty = append(faulty, failover.Member[failover.Upstream]{Name: fmt.Sprintf("up%d", i), Client: failover.Upstream{
			BaseURL: srv.BaseURL(), Key: key, Auth: a, Transport: tr,
			Header: http.Header{"Ocp-Apim-Subscription-Key": {hdr}, "Anthropic-Version": {"2023-06-01"}},
		}})
	}
	kHealthy := faultCanary()
	canaries = append(canaries, kHealthy)
	good := failover.Member[failover.Upstream]{Name: "healthy", Priority: 1, Client: failover.Upstream{BaseURL: healthy.BaseURL(), Key: kHealthy, Transport: tr}}
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`
	if stream {
		body = `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello"}]}`
	}
	for _, ms := range [][]failover.Member[failover.Upstream]{append(slices.Clone(faulty), good), faulty} {
		var px texts
		p, err := failover.New(ms, append(px.options(), failover.WithAttemptTimeout(2*time.Second))...)
		require.NoError(t, err)
		hc := &http.Client{Transport: failover.NewTransport(p)}
		for range 2 { // the second call of the pool without the healthy member finds every member cooling
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://sdk.invalid/v1/chat/completions", strings.NewReader(body))
			require.NoError(t, err)
			resp, err := hc.Do(req)
			px.add(err)
			if err == nil {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
				_ = resp.Body.Close()
				if resp.StatusCode >= 400 { // the pool's answer: the last upstream's error, or its 503
					px.all = append(px.all, string(b), fmt.Sprint(resp.Header))
				}
			}
		}
		x.all = append(x.all, collect(t, &px, p)...)
	}
	require.Positive(t, srv.Calls())
	return canaries
}
