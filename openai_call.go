package failover

import (
	"context"
	"fmt"
	"net/http"

	"github.com/sashabaranov/go-openai"
)

// servedHeader names the member that served a call, in the Header() of
// every response [OpenAI] returns.
const servedHeader = "X-Failover-Member"

type callOptionsKey struct{}

// WithCallOptions returns a copy of ctx that carries opts to every method
// of [OpenAI] and to [Call] made with it: [Tokens] (which replaces the
// method's own estimate), [OnlyModel], [OnlyGroup], [OnlyMember]. Options
// already in ctx stay; later ones add to them, and a later Tokens wins.
func WithCallOptions(ctx context.Context, opts ...CallOption) context.Context {
	if prev, ok := ctx.Value(callOptionsKey{}).([]CallOption); ok {
		opts = append(prev[:len(prev):len(prev)], opts...)
	}
	return context.WithValue(ctx, callOptionsKey{}, opts)
}

// callOptions returns the options of one call: the method's token estimate,
// then those that ctx carries, then extra.
func callOptions(ctx context.Context, tokens int, extra ...CallOption) []CallOption {
	var carried []CallOption
	if ctx != nil {
		carried, _ = ctx.Value(callOptionsKey{}).([]CallOption)
	}
	opts := make([]CallOption, 0, 1+len(carried)+len(extra))
	opts = append(opts, Tokens(tokens))
	opts = append(opts, carried...)
	return append(opts, extra...)
}

// tokensOf returns the Tokens that opts give (the last one), or 0.
func tokensOf(opts []CallOption) int {
	var cs callSettings
	for _, opt := range opts {
		if opt != nil {
			cs = opt(cs)
		}
	}
	return cs.tokens
}

// headerCarrier is what go-openai's responses and streams embed: their
// response headers.
type headerCarrier interface {
	Header() http.Header
	SetHeader(http.Header)
}

// markServed sets X-Failover-Member on a copy of the headers of v (a
// go-openai response or stream, or a pointer to one), so that the caller
// learns which member served and the recorded response stays as it was.
func markServed(v any, member string) {
	h, ok := v.(headerCarrier)
	if !ok || isNil(v) {
		return
	}
	hdr := h.Header().Clone()
	if hdr == nil {
		hdr = make(http.Header, 1)
	}
	hdr[servedHeader] = []string{member}
	h.SetHeader(hdr)
}

// serve runs one call of the go-openai glue through the pool: each attempt
// records the member's response headers and error body, rests a member
// whose success says it is spent, names the member that served in the
// response's headers, and prepares a failure for the classifier.
func serve[T any](ctx context.Context, o *OpenAI, tokens int, call func(ctx context.Context, m Member[*openai.Client]) (T, error), extra ...CallOption) (T, error) {
	opts := callOptions(ctx, tokens, extra...)
	next := tokensOf(opts)
	resp, err := Do(ctx, o.pool, func(ctx context.Context, m Member[*openai.Client]) (T, error) {
		ctx, x := withExchange(ctx)
		resp, err := call(ctx, m)
		o.restIfSpent(m.Name, x, err, next)
		if err == nil {
			markServed(any(&resp), m.Name)
			markServed(any(resp), m.Name) // a pointer T, such as a stream
			if u, ok := usageOf(any(&resp)); ok {
				u.Member = m.Name
				o.pool.used(ctx, u)
			}
		}
		return resp, x.wrap(err, m.Model, o.pool.secrets())
	}, opts...)
	return resp, unwrapResponse(err)
}

// Call runs fn, any call on a go-openai client, through the pool of o with
// what the methods of [OpenAI] have: it fails over as they do, the
// member's response headers reach the classifier (a 429 with
// Retry-After: 60 cools that member for 60 s), a success whose headers say
// the member is spent rests it, errors are redacted, and a response with
// Header()/SetHeader (every go-openai response) names the member that
// served in X-Failover-Member. opts add to those that ctx carries (see
// [WithCallOptions]).
//
// A call on an account-bound resource (a file, batch, assistant, thread,
// vector store, fine-tune or stored response, by ID) must not move to
// another account: pin it with [OnlyMember], or use [OpenAI.On].
func Call[T any](ctx context.Context, o *OpenAI, fn func(ctx context.Context, c *openai.Client) (T, error), opts ...CallOption) (T, error) {
	var zero T
	switch {
	case o == nil || o.pool == nil:
		return zero, ErrNilPool
	case fn == nil:
		return zero, fmt.Errorf("%w: Call with a nil function", ErrInvalid)
	}
	return serve(ctx, o, 0, func(ctx context.Context, m Member[*openai.Client]) (T, error) {
		return fn(ctx, m.Client)
	}, opts...)
}

// On returns the go-openai client of the member called name, or
// ErrUnknownMember. A call made on it goes to that member only, outside
// the pool: no failover, cooldown or retry-hint capture. Use it for
// account-bound resources that need a client (uploads, downloads,
// polling); prefer [Call] with [OnlyMember], which keeps the pool's
// bookkeeping.
func (o *OpenAI) On(name string) (*openai.Client, error) {
	if o == nil || o.pool == nil {
		return nil, ErrNilPool
	}
	_, m, err := o.pool.member(name)
	if err != nil {
		return nil, err
	}
	return m.Client, nil
}
