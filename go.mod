module github.com/llmfailover/failover

go 1.25.0

require github.com/sashabaranov/go-openai v1.43.0
