module github.com/dflockd/dflockd

go 1.26

require (
	github.com/alecthomas/kong v1.17.0 // indirect
	github.com/puzpuzpuz/xsync/v3 v3.5.1 // indirect
)
