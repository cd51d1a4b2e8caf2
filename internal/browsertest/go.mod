module github.com/llmfailover/failover/internal/browsertest

go 1.25.0

require (
	github.com/chromedp/cdproto v0.160.1
	github.com/chromedp/chromedp v0.24.0
	github.com/llmfailover/failover v0.0.0
)

require (
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	github.com/sashabaranov/go-openai v1.43.0 // indirect
)

replace github.com/llmfailover/failover => ../../
