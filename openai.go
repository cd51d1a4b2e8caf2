package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/llmfailover/failover/internal/redact"
	"github.com/sashabaranov/go-openai"
)

// OpenAIMember returns a member with a go-openai client for cfg. The client's
// HTTPClient (nil means a default *http.Client) is wrapped so that each
// call's response headers reach the classifier when the call is made through
// [OpenAI]: Retry-After, retry-after-ms and the x-ratelimit-* headers then
// set the cooldown floor on the plain and the streaming path (go-openai
// itself drops headers when a stream fails to open). The wrapper also
// reads at most 64 KiB of an error response (go-openai would read all of
// it), learns the credential the client sends so that the pool redacts it
// from every text, and redacts credentials from the URL of transport errors.
//
// It works with OpenAI, Azure (openai.DefaultAzureConfig) and any
// OpenAI-compatible base URL. Set Priority, Model, Group and Limits on the
// returned member as needed.
func OpenAIMember(name string, cfg openai.ClientConfig) Member[*openai.Client] {
	next := cfg.HTTPClient
	if next == nil {
		next = &http.Client{}
	}
	cred := &redact.Learned{}
	cfg.HTTPClient = recordingDoer{next: next, cred: cred}
	provider := ProviderOf(cfg.BaseURL)
	if cfg.APIType == openai.APITypeAzure || cfg.APIType == openai.APITypeAzureAD {
		provider = "azure.ai.openai"
	}
	return Member[*openai.Client]{Name: name, Client: openai.NewClientWithConfig(cfg), Provider: provider, cred: cred}
}

// OpenAIKeys expands several keys of one provider into members name#1 …
// name#N, in the order given, each with its own cooldown state: one key's
// 429 never benches its siblings. cfg builds a key's configuration, for
// example openai.DefaultConfig or a function that also sets BaseURL; nil
// means openai.DefaultConfig.
func OpenAIKeys(name string, cfg func(key string) openai.ClientConfig, keys ...string) []Member[*openai.Client] {
	if cfg == nil {
		cfg = openai.DefaultConfig
	}
	ms := make([]Member[*openai.Client], len(keys))
	for i, k := range keys {
		ms[i] = OpenAIMember(name+"#"+strconv.Itoa(i+1), cfg(k))
	}
	return ms
}

// exchange records the response of one call; it travels in the request's
// context, so concurrent calls on one client never mix their headers.
type exchange struct {
	mu     sync.Mutex
	header http.Header
	body   []byte // what go-openai read of an error response (at most 64 KiB)
	status int    // of the response
	path   string // of the request
}

type exchangeKey struct{}

func withExchange(ctx context.Context) (context.Context, *exchange) {
	x := &exchange{}
	return context.WithValue(ctx, exchangeKey{}, x), x
}

// wrap prepares a failed call's error for the pool: the pool's credentials
// redacted (see scrub), a Model the member set that go-openai refuses before
// sending marked as the member's configuration, and the recorded headers
// and error body attached for the classifier.
func (x *exchange) wrap(err error, model string, sec *redact.Secrets) error {
	if err == nil {
		return nil
	}
	err = scrub(err, sec)
	if model != "" && (errors.Is(err, openai.ErrChatCompletionInvalidModel) || errors.Is(err, openai.ErrCompletionUnsupportedModel) ||
		errors.Is(err, openai.ErrModerationInvalidModel)) {
		return &memberConfigError{err}
	}
	x.mu.Lock()
	h, b, status, path := x.header, x.body, x.status, x.path
	x.mu.Unlock()
	if h == nil {
		return err
	}
	if status == http.StatusNotFound && accountBound(path) {
		err = &resourceError{err} // an ID of one account's files, batches, threads…
	}
	if len(b) > 0 {
		b = []byte(sec.String(string(b)))
	}
	return &responseError{err: err, header: h, body: b}
}

// responseError carries the response headers and the error body of a
// failed call to the classifier: go-openai keeps only the fields it knows
// (not Google's RetryInfo and QuotaFailure details, nor OpenRouter's
// metadata).
type responseError struct {
	err    error
	header http.Header
	body   []byte
}

func (e *responseError) Error() string       { return e.err.Error() }
func (e *responseError) Unwrap() error       { return e.err }
func (e *responseError) Header() http.Header { return e.header }
func (e *responseError) Body() []byte        { return e.body }

// unwrapResponse returns the provider's error itself when Do returned it
// unchanged (a stop reason), without the header carrier.
func unwrapResponse(err error) error {
	if re, ok := err.(*responseError); ok {
		return re.err
	}
	return err
}

// recordingDoer records response headers into the call's exchange, marks
// chat streams that end without [DONE], bounds error bodies, learns the
// credential sent, and redacts transport errors.
type recordingDoer struct {
	next openai.HTTPDoer
	cred *redact.Learned
}

func (d recordingDoer) Do(req *http.Request) (*http.Response, error) {
	d.cred.Add(strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer "))
	d.cred.Add(req.Header.Get("Api-Key"))
	resp, err := d.next.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = &url.Error{Op: ue.Op, URL: redact.String(ue.URL), Err: ue.Err}
		}
		return resp, err
	}
	if x, ok := req.Context().Value(exchangeKey{}).(*exchange); ok {
		x.mu.Lock()
		x.header, x.status, x.path = resp.Header, resp.StatusCode, req.URL.Path
		x.mu.Unlock()
	}
	if checksDone(req, resp, nil) {
		resp.Body = &sseBody{ReadCloser: resp.Body, events: true}
	}
	if resp.StatusCode >= 400 {
		resp.Body = cappedBody(resp.Body)
		if x, ok := req.Context().Value(exchangeKey{}).(*exchange); ok {
			resp.Body = &bodyRecorder{ReadCloser: resp.Body, x: x}
		}
	}
	return resp, nil
}

// bodyRecorder copies what go-openai reads of an error body into the
// call's exchange. The body is already capped, so the copy is bounded.
type bodyRecorder struct {
	io.ReadCloser
	x *exchange
}

func (b *bodyRecorder) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.x.mu.Lock()
		b.x.body = append(b.x.body, p[:n]...)
		b.x.mu.Unlock()
	}
	return n, err
}

// OpenAI is a drop-in for the calls of *openai.Client that send a request
// to a model (chat, completions, the Responses API, embeddings, images,
// audio, moderations, models); each call fails over across the pool's
// members. A member with Model set serves the call with that model; the
// caller's request is copied, never changed. Every response's Header()
// names the member that served in X-Failover-Member. Per-call options
// travel in the context (see [WithCallOptions]). Calls on account-bound
// resources run pinned to one member: see [Call], [OnlyMember] and
// [OpenAI.On].
type OpenAI struct {
	pool       *Pool[*openai.Client]
	firstChunk time.Duration
}

// OpenAIOption configures [NewOpenAI].
type OpenAIOption func(*OpenAI)

// NewOpenAI returns a client that runs each call through p. Build p's
// members with [OpenAIMember] or [OpenAIKeys] so that retry hints in
// response headers are honoured.
func NewOpenAI(p *Pool[*openai.Client], opts ...OpenAIOption) *OpenAI {
	o := &OpenAI{pool: p}
	for _, opt := range opts {
		if opt != nil {
			opt(o)
		}
	}
	return o
}

// Pool returns the pool the client runs on, for Status, Enable and Disable.
func (o *OpenAI) Pool() *Pool[*openai.Client] { return o.pool }

// CreateChatCompletion is openai.Client.CreateChatCompletion with failover.
func (o *OpenAI) CreateChatCompletion(ctx context.Context, req openai.ChatCompletionRequest) (openai.ChatCompletionResponse, error) {
	ctx = o.pool.named(ctx, opChat)
	return serve(ctx, o, EstimateTokens(req), func(ctx context.Context, m Member[*openai.Client]) (openai.ChatCompletionResponse, error) {
		r := req // each attempt starts from the caller's request
		if m.Model != "" {
			r.Model = m.Model
		}
		return m.Client.CreateChatCompletion(ctx, r)
	}, ForModel(req.Model))
}

// CreateCompletion is openai.Client.CreateCompletion with failover.
func (o *OpenAI) CreateCompletion(ctx context.Context, req openai.CompletionRequest) (openai.CompletionResponse, error) {
	ctx = o.pool.named(ctx, opCompletion)
	return serve(ctx, o, estimateCompletion(req), func(ctx context.Context, m Member[*openai.Client]) (openai.CompletionResponse, error) {
		r := req
		if m.Model != "" {
			r.Model = m.Model
		}
		return m.Client.CreateCompletion(ctx, r)
	}, ForModel(req.Model))
}

// CreateEmbeddings is openai.Client.CreateEmbeddings with failover. A
// member's Model replaces the model of an EmbeddingRequest,
// EmbeddingRequestStrings or EmbeddingRequestTokens (or a pointer to one).
func (o *OpenAI) CreateEmbeddings(ctx context.Context, conv openai.EmbeddingRequestConverter) (openai.EmbeddingResponse, error) {
	ctx = o.pool.named(ctx, opEmbeddings)
	if isNil(conv) {
		return openai.EmbeddingResponse{}, fmt.Errorf("%w: CreateEmbeddings with a nil request", ErrInvalid)
	}
	return serve(ctx, o, estimateEmbedding(conv), func(ctx context.Context, m Member[*openai.Client]) (openai.EmbeddingResponse, error) {
		return m.Client.CreateEmbeddings(ctx, withEmbeddingModel(conv, m.Model))
	}, ForModel(string(conv.Convert().Model)))
}

// restIfSpent cools a member whose successful response says its rate limit
// is spent (x-ratelimit-remaining-requests: 0, or fewer remaining tokens
// than a call like this one needs) until the matching reset, so the next
// call does not spend a 429 to learn it.
func (o *OpenAI) restIfSpent(name string, x *exchange, err error, next int) {
	if err != nil {
		return
	}
	x.mu.Lock()
	h := x.header
	x.mu.Unlock()
	if h == nil {
		return
	}
	now := o.pool.now()
	if d := exhaustedFor(h, next, now); d > 0 {
		o.pool.rest(name, now.Add(d), now)
	}
}

// withEmbeddingModel returns a copy of conv with model set, or conv itself
// when model is empty or the request type is not one of go-openai's.
func withEmbeddingModel(conv openai.EmbeddingRequestConverter, model string) openai.EmbeddingRequestConverter {
	if model == "" {
		return conv
	}
	switch r := conv.(type) {
	case openai.EmbeddingRequest:
		r.Model = openai.EmbeddingModel(model)
		return r
	case openai.EmbeddingRequestStrings:
		r.Model = openai.EmbeddingModel(model)
		return r
	case openai.EmbeddingRequestTokens:
		r.Model = openai.EmbeddingModel(model)
		return r
	case *openai.EmbeddingRequest:
		return withEmbeddingModel(*r, model)
	case *openai.EmbeddingRequestStrings:
		return withEmbeddingModel(*r, model)
	case *openai.EmbeddingRequestTokens:
		return withEmbeddingModel(*r, model)
	}
	return conv
}
