module github.com/llmfailover/failover/benchmarks

go 1.25.0

replace github.com/llmfailover/failover => ..

require (
	github.com/failsafe-go/failsafe-go v0.9.8
	github.com/llmfailover/failover v0.0.0-00010101000000-000000000000
	github.com/sony/gobreaker/v2 v2.4.0
)

require (
	github.com/bits-and-blooms/bitset v1.24.4 // indirect
	github.com/sashabaranov/go-openai v1.43.0 // indirect
)
