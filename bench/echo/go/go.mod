module stackless/bench/echo/go

go 1.19
