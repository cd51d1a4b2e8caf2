package failover

import (
	"context"
	"log/slog"
	"strconv"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind int

// The events, in the order a member usually goes through them.
const (
	_                  EventKind = iota
	EventAttemptFailed           // an attempt failed and the call moves on
	EventCooldown                // a member started (or extended) a cooldown until Until
	EventDisabled                // a member left rotation until Enable
	EventProbe                   // a call is probing a member whose cooldown ended
	EventRecovered               // a member is Active again (probe succeeded or Enable)
	EventExhausted               // a call found no member to serve it; Err is the *Error
	EventHedge                   // a hedged attempt started on Member (see WithHedge)
)

var eventNames = [...]string{"", "attempt_failed", "cooldown", "disabled", "probe", "recovered", "exhausted", "hedge"}

// String returns the kind's name, such as "cooldown".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event reports a change in the pool to the function set by [WithObserver].
type Event struct {
	Kind    EventKind
	Member  string    // empty for EventExhausted
	Reason  Reason    // the classification that caused it, if any
	Err     error     // the error; its text is redacted, errors.As reaches the original
	Until   time.Time // end of the cooldown (EventCooldown, EventDisabled), or RetryAt (EventExhausted)
	Attempt int       // 1-based attempt number within the call, 0 if outside a call
}

// emit hands ev to the observer and the logger. It is never called with a
// lock held.
func (p *Pool[C]) emit(ctx context.Context, ev Event) {
	if p.set.observer != nil {
		p.set.observer(ev)
	}
	l := p.set.logger
	if l == nil {
		return
	}
	level, msg := slog.LevelWarn, "failover: "+ev.Kind.String()
	switch ev.Kind {
	case EventDisabled, EventExhausted:
		level = slog.LevelError
	case EventProbe, EventRecovered, EventHedge:
		level = slog.LevelInfo
	}
	if !l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 5)
	if ev.Member != "" {
		attrs = append(attrs, slog.String("member", ev.Member))
	}
	if ev.Reason != "" {
		attrs = append(attrs, slog.String("reason", string(ev.Reason)))
	}
	if !ev.Until.IsZero() {
		attrs = append(attrs, slog.Time("until", ev.Until))
	}
	if ev.Attempt > 0 {
		attrs = append(attrs, slog.Int("attempt", ev.Attempt))
	}
	if ev.Err != nil {
		attrs = append(attrs, slog.String("error", ev.Err.Error()))
	}
	l.LogAttrs(ctx, level, msg, attrs...)
}
