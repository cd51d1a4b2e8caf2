// Package otelfailover records a [failover.Pool] in OpenTelemetry: metrics
// per member and per call (with the GenAI client conventions where they
// apply) and a span per call with a child span per attempt.
//
// Attribute values are member names, reasons, lanes, states and the
// operation, provider and model names the caller gives: their number is
// bounded by the pool's members and the reasons, and none carries a
// secret or prompt text.
package otelfailover

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"

	"github.com/llmfailover/failover"
)

// The attribute keys.
const (
	// AttrMember is the member's name.
	AttrMember = attribute.Key("failover.member")
	// AttrReason is a failure's classification, such as "rate_limit".
	AttrReason = attribute.Key("failover.reason")
	// AttrCause is why a member was skipped: "cooling", "probing",
	// "disabled", "limited" or "model" (it lacks the call's model).
	AttrCause = attribute.Key("failover.skip.cause")
	// AttrLane is a cooldown's lane: "transient", "quota" or "permanent".
	AttrLane = attribute.Key("failover.lane")
	// AttrState is a member's state, such as "cooling_down".
	AttrState = attribute.Key("failover.state")
	// AttrAttempt is an attempt's 1-based number within its call.
	AttrAttempt = attribute.Key("failover.attempt")
	// AttrSkipped marks the span of a member the call skipped.
	AttrSkipped = attribute.Key("failover.skipped")
	// AttrCooldownUntil is the end of the cooldown an attempt's failure
	// opened, in RFC 3339.
	AttrCooldownUntil = attribute.Key("failover.cooldown.until")
	// AttrHedged marks an attempt started by hedging; AttrLost one that
	// lost to another.
	AttrHedged = attribute.Key("failover.hedged")
	AttrLost   = attribute.Key("failover.lost")
	// The GenAI semantic conventions' keys.
	AttrOperation     = attribute.Key("gen_ai.operation.name")
	AttrProvider      = attribute.Key("gen_ai.provider.name")
	AttrRequestModel  = attribute.Key("gen_ai.request.model")
	AttrResponseModel = attribute.Key("gen_ai.response.model")
	AttrTokenType     = attribute.Key("gen_ai.token.type")
	AttrErrorType     = attribute.Key("error.type")
	attrOutcomeOK     = "ok"
	errorTypePanic    = "panic"
	errorTypeNoMember = "unavailable"
	otherValue        = "_OTHER"
)

type opKey struct{}

// operation is what WithOperation puts in a context.
type operation struct{ name, provider string }

// WithOperation returns ctx with the GenAI operation name (such as "chat"
// or "embeddings") and provider name (such as "openai") of the calls made
// with it, for gen_ai.operation.name and gen_ai.provider.name. Use fixed
// names: they become attribute values. Without it, the operation is the
// one failover.OperationOf finds (the OpenAI client's methods and
// Transport name theirs), and the provider is the serving member's
// Provider; a member's Provider also wins over the provider named here,
// since a call may fail over from one provider to another. The name is
// failover.WithOperation's too, so failover.OperationOf reads it.
func WithOperation(ctx context.Context, name, provider string) context.Context {
	return context.WithValue(failover.WithOperation(ctx, name), opKey{}, operation{name, provider})
}

// operationOf returns the operation of ctx: WithOperation's, or the one
// the failover glue named.
func operationOf(ctx context.Context) (operation, bool) {
	if op, ok := ctx.Value(opKey{}).(operation); ok {
		return op, true
	}
	if name := failover.OperationOf(ctx); name != "" {
		return operation{name: name}, true
	}
	return operation{}, false
}

// errorType is the error.type of a call's error: the reason of its last
// tried attempt, "unavailable" when no member could be tried, "panic".
func errorType(err error, last failover.Reason) string {
	var fe *failover.Error
	switch {
	case errors.Is(err, failover.ErrPanicked):
		return errorTypePanic
	case errors.As(err, &fe):
		for i := len(fe.Attempts) - 1; i >= 0; i-- {
			if a := fe.Attempts[i]; !a.Skipped && a.Reason != "" {
				return string(a.Reason)
			}
		}
		return errorTypeNoMember
	case last != "":
		return string(last)
	}
	return string(failover.ReasonUnknown)
}

// causeName names a skip's cause: the Err of a skipped Attempt, or the
// cause the Skip hook receives.
func causeName(err error) string {
	switch {
	case errors.Is(err, failover.ErrCoolingDown):
		return "cooling"
	case errors.Is(err, failover.ErrProbing):
		return "probing"
	case errors.Is(err, failover.ErrDisabled):
		return "disabled"
	case errors.Is(err, failover.ErrLimited):
		return "limited"
	case errors.Is(err, failover.ErrLacksModel):
		return "model"
	}
	return "other"
}
