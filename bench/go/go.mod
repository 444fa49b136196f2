module stackless/bench/go

go 1.19
