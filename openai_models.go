package failover

import (
	"context"

	"github.com/sashabaranov/go-openai"
)

// ListModels is openai.Client.ListModels with failover: the models of the
// first member that answers (members of different providers list
// different models; use [OnlyMember] or [OnlyGroup] to ask one).
func (o *OpenAI) ListModels(ctx context.Context) (openai.ModelsList, error) {
	return serve(ctx, o, 1, func(ctx context.Context, m Member[*openai.Client]) (openai.ModelsList, error) {
		return m.Client.ListModels(ctx)
	})
}

// GetModel is openai.Client.GetModel with failover. A member with Model
// set is asked about its own model, the one it would serve in place of
// modelID.
func (o *OpenAI) GetModel(ctx context.Context, modelID string) (openai.Model, error) {
	return serve(ctx, o, 1, func(ctx context.Context, m Member[*openai.Client]) (openai.Model, error) {
		id := modelID
		if m.Model != "" {
			id = m.Model
		}
		return m.Client.GetModel(ctx, id)
	}, ForModel(modelID))
}

// Moderations is openai.Client.Moderations with failover.
func (o *OpenAI) Moderations(ctx context.Context, req openai.ModerationRequest) (openai.ModerationResponse, error) {
	return serve(ctx, o, textTokens(len(req.Input)), func(ctx context.Context, m Member[*openai.Client]) (openai.ModerationResponse, error) {
		r := req
		if m.Model != "" {
			r.Model = m.Model
		}
		return m.Client.Moderations(ctx, r)
	}, ForModel(req.Model))
}

// textTokens estimates the tokens of n bytes of text, as [EstimateTokens]
// counts them: one for every four bytes, at least one.
func textTokens(n int) int { return max((n+3)/4, 1) }
