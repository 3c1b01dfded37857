module cachew-rs/oracle/kong

go 1.26

require github.com/alecthomas/kong v1.15.0
