package otelfailover

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmfailover/failover"
)

// Span names.
const (
	SpanCall    = "failover.call"    // one Do, the caller's span its parent
	SpanAttempt = "failover.attempt" // one member's attempt, or its skip, a child of the call's
)

// Traces returns the failover.Option that makes a span per call, a child
// of the caller's span, with a child span per attempt in order (member,
// attempt number, reason, cooldown until), an event per member the call
// passed over (EventSkip: member and cause), and, when no member served,
// a child span per member it could not try (failover.skipped=true, its
// reason and cause).
func Traces(tp trace.TracerProvider) failover.Option {
	t := &tracer{t: tp.Tracer(ScopeName)}
	return failover.WithHooks(failover.Hooks{Call: t.call, Attempt: t.attempt, Skip: t.skip})
}

type tracer struct{ t trace.Tracer }

type spanCallKey struct{}

// spanCall is what a call's span learns from its attempts.
type spanCall struct {
	mu     sync.Mutex
	member string          // the last member tried
	reason failover.Reason // its failure's reason, if it failed
}

func (t *tracer) call(ctx context.Context) (context.Context, func(error)) {
	var attrs []attribute.KeyValue
	if op, ok := operationOf(ctx); ok {
		attrs = append(attrs, AttrOperation.String(op.name))
		if op.provider != "" {
			attrs = append(attrs, AttrProvider.String(op.provider))
		}
	}
	c := &spanCall{}
	ctx, span := t.t.Start(context.WithValue(ctx, spanCallKey{}, c), SpanCall, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		c.mu.Lock()
		member, last := c.member, c.reason
		c.mu.Unlock()
		if member != "" {
			span.SetAttributes(AttrMember.String(member))
		}
		if err != nil {
			et := errorType(err, last)
			span.SetAttributes(AttrErrorType.String(et))
			span.SetStatus(codes.Error, et)
			var fe *failover.Error
			if errors.As(err, &fe) {
				now := time.Now()
				for _, a := range fe.Attempts {
					if !a.Skipped {
						continue
					}
					_, s := t.t.Start(ctx, SpanAttempt, trace.WithTimestamp(now), trace.WithAttributes(
						AttrMember.String(a.Member), AttrSkipped.Bool(true),
						AttrReason.String(string(a.Reason)), AttrCause.String(causeName(a.Err))))
					s.End(trace.WithTimestamp(now))
				}
			}
		}
		span.End()
	}
}

// EventSkip is the event a call's span gets for each member it passed
// over, with the member and the cause.
const EventSkip = "failover.skip"

func (t *tracer) skip(ctx context.Context, member string, cause error) {
	trace.SpanFromContext(ctx).AddEvent(EventSkip, trace.WithAttributes(AttrMember.String(member), AttrCause.String(causeName(cause))))
}

func (t *tracer) attempt(ctx context.Context, member string, n int) (context.Context, func(failover.AttemptEnd)) {
	c, _ := ctx.Value(spanCallKey{}).(*spanCall)
	ctx, span := t.t.Start(ctx, SpanAttempt, trace.WithAttributes(AttrMember.String(member), AttrAttempt.Int(n)))
	return ctx, func(e failover.AttemptEnd) {
		if c != nil && !e.Lost {
			c.mu.Lock()
			c.member, c.reason = member, e.Reason
			c.mu.Unlock()
		}
		if e.Hedged {
			span.SetAttributes(AttrHedged.Bool(true))
		}
		if e.Lost {
			span.SetAttributes(AttrLost.Bool(true))
		}
		if e.Err != nil && !e.Lost {
			reason := string(e.Reason)
			if errors.Is(e.Err, failover.ErrPanicked) {
				reason = errorTypePanic
			}
			span.SetAttributes(AttrReason.String(reason), AttrErrorType.String(reason))
			span.SetStatus(codes.Error, reason)
		}
		if !e.Until.IsZero() {
			span.SetAttributes(AttrCooldownUntil.String(e.Until.UTC().Format(time.RFC3339)))
		}
		span.End()
	}
}
