package failover

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/sashabaranov/go-openai"
)

// eventSource is what go-openai's streams (*openai.CompletionStream,
// *openai.ResponseStream) offer.
type eventSource interface {
	RecvRaw() ([]byte, error)
	Close() error
	Header() http.Header
	SetHeader(http.Header)
}

// protocol is what tells one kind of stream's events apart.
type protocol struct {
	// failed returns the failure of a first event that reports one (the
	// call fails over), or nil.
	failed func(raw []byte) error
	// ends reports whether an event ends the stream; nil means the
	// transport checks the end ([DONE], see sseBody).
	ends func(raw []byte) bool
	// midStream returns the failure an event reports after the first, to
	// report against the member, or nil.
	midStream func(raw []byte) error
}

// eventStream is a stream that failed over until its first event; the
// exported streams wrap it.
type eventStream[E any] struct {
	src    eventSource
	first  []byte // the first event, not yet returned
	proto  protocol
	ended  bool // an event that ends the stream was seen
	cancel context.CancelFunc
	pool   *Pool[*openai.Client]
	member string
	ctx    context.Context // the attempt's that opened it, for the Usage hook
	once   sync.Once       // reports a failure at most once
}

// openEvents opens a stream on one member with open and waits for its
// first event, as openStream does for chat: the stream lives in ctx (the
// caller's), the attempt's context and the first-chunk timeout bound only
// the wait.
func openEvents[E any](ctx, actx context.Context, o *OpenAI, m Member[*openai.Client], tokens int, proto protocol, open func(ctx context.Context) (eventSource, error)) (*eventStream[E], error) {
	sctx, cancel := context.WithCancel(ctx)
	sctx, x := withExchange(sctx)
	stopAttempt := context.AfterFunc(actx, cancel)
	var stalled *time.Timer
	if o.firstChunk > 0 {
		stalled = time.AfterFunc(o.firstChunk, cancel)
	}
	src, err := open(sctx)
	var first []byte
	opened := err == nil && !isNil(src)
	if opened {
		first, err = src.RecvRaw()
		if err == nil && proto.failed != nil {
			err = proto.failed(first)
		}
		if errors.Is(err, io.EOF) && proto.ends != nil {
			err = io.ErrUnexpectedEOF // no event ended the stream
		}
	} else if err == nil {
		err = errors.New("failover: the client returned neither a stream nor an error")
	}
	attemptOver := !stopAttempt()
	timedOut := stalled != nil && !stalled.Stop()
	if opened && (err == nil || errors.Is(err, io.EOF)) {
		if !attemptOver && !timedOut {
			o.restIfSpent(m.Name, x, nil, tokens)
			markServed(src, m.Name)
			s := &eventStream[E]{src: src, first: first, proto: proto, cancel: cancel, pool: o.pool, member: m.Name, ctx: actx}
			if err == nil {
				s.observe(first)
			} else {
				s.first, s.ended = nil, true
			}
			return s, nil
		}
		err = context.Canceled
	}
	if opened {
		_ = src.Close()
	}
	cancel()
	return nil, x.wrap(o.openFailure(ctx, actx, err, timedOut, attemptOver, "event"), m.Model, o.pool.secrets())
}

// observe notes an event that ends the stream or reports a failure.
// It counts the usage an event reports (a chunk's usage, Responses'
// response.completed) to the member.
func (s *eventStream[E]) observe(raw []byte) {
	if u, ok := scanUsage(raw); ok {
		u.Member = s.member
		s.pool.used(s.ctx, u)
	}
	if s.proto.ends != nil && s.proto.ends(raw) {
		s.ended = true
	}
	if s.proto.midStream != nil {
		if err := s.proto.midStream(raw); err != nil {
			s.report(err)
		}
	}
}

func (s *eventStream[E]) report(err error) {
	s.once.Do(func() { s.pool.Report(s.member, err) })
}

// recvRaw returns the next event's data, io.EOF at the stream's clean
// end, or io.ErrUnexpectedEOF when it ended without its end event.
func (s *eventStream[E]) recvRaw() ([]byte, error) {
	if s.first != nil {
		raw := s.first
		s.first = nil
		return raw, nil
	}
	if s.src == nil {
		return nil, io.EOF
	}
	raw, err := s.src.RecvRaw()
	if err == nil {
		s.observe(raw)
		return raw, nil
	}
	if errors.Is(err, io.EOF) {
		if s.proto.ends == nil || s.ended {
			return nil, err
		}
		err = io.ErrUnexpectedEOF
	}
	err = scrub(err, s.pool.secrets())
	s.report(err)
	return nil, err
}

func (s *eventStream[E]) recv() (E, error) {
	var e E
	raw, err := s.recvRaw()
	if err != nil {
		return e, err
	}
	err = json.Unmarshal(raw, &e)
	return e, err
}

func (s *eventStream[E]) close() error {
	if s.cancel != nil {
		s.cancel()
	}
	if s.src == nil {
		return nil
	}
	return s.src.Close()
}

func (s *eventStream[E]) header() http.Header {
	if s.src == nil {
		return http.Header{}
	}
	return s.src.Header()
}
