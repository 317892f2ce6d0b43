module github.com/ptlab/ptlab/bench

go 1.26.3

replace github.com/ptlab/ptlab => ../

require (
	github.com/ptlab/ptlab v0.0.0-00010101000000-000000000000
	gvisor.dev/gvisor v0.0.0-20260905035102-160fafc42237
)

require (
	golang.org/x/sys v0.46.0 // indirect
	golang.org/x/time v0.15.0 // indirect
)
