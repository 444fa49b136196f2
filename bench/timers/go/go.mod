module stackless/bench/timers/go

go 1.19
