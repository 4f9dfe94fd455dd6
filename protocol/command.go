package protocol

import "strconv"

// Command is a request verb. The zero value, CmdUnknown, stands for any
// first line that is not one of the sixteen 1.x verbs or the dflockd
// extensions (inspect, name, session, resume, bye, cluster).
type Command uint8

// The request verbs of dflockd 1.x. The comment after each constant is its
// wire spelling; verbs are case-sensitive.
const (
	CmdUnknown    Command = iota // not a verb
	CmdAuth                      // "auth"
	CmdLock                      // "l"
	CmdRelease                   // "r"
	CmdRenew                     // "n"
	CmdEnqueue                   // "e"
	CmdWait                      // "w"
	CmdSemLock                   // "sl"
	CmdSemRelease                // "sr"
	CmdSemRenew                  // "sn"
	CmdSemEnqueue                // "se"
	CmdSemWait                   // "sw"
	CmdListen                    // "listen"
	CmdUnlisten                  // "unlisten"
	CmdSignal                    // "signal"
	CmdPing                      // "ping"
	CmdStats                     // "stats"

	// dflockd extensions: a 1.x server answers them `error` (unknown
	// command), which is how a client tells the two apart.

	CmdInspect // "inspect"
	CmdName    // "name"
	CmdSession // "session"
	CmdResume  // "resume"
	CmdBye     // "bye"
	CmdCluster // "cluster"
)

// numCommands is the number of defined Command values, CmdUnknown included.
const numCommands = int(CmdCluster) + 1

var commandVerbs = [numCommands]string{
	CmdUnknown:    "unknown",
	CmdAuth:       "auth",
	CmdLock:       "l",
	CmdRelease:    "r",
	CmdRenew:      "n",
	CmdEnqueue:    "e",
	CmdWait:       "w",
	CmdSemLock:    "sl",
	CmdSemRelease: "sr",
	CmdSemRenew:   "sn",
	CmdSemEnqueue: "se",
	CmdSemWait:    "sw",
	CmdListen:     "listen",
	CmdUnlisten:   "unlisten",
	CmdSignal:     "signal",
	CmdPing:       "ping",
	CmdStats:      "stats",
	CmdInspect:    "inspect",
	CmdName:       "name",
	CmdSession:    "session",
	CmdResume:     "resume",
	CmdBye:        "bye",
	CmdCluster:    "cluster",
}

// String returns the wire verb of c ("l", "sl", "listen", ...). CmdUnknown
// returns "unknown" and values outside the defined range "Command(N)";
// neither is a verb, so a server answers them with ErrUnknownCommand.
func (c Command) String() string {
	if int(c) < numCommands {
		return commandVerbs[c]
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// ParseCommand returns the Command whose wire verb is exactly b, or
// CmdUnknown. Matching is case-sensitive and b is not trimmed. It does not
// allocate.
func ParseCommand(b []byte) Command {
	switch string(b) { // the compiler does not allocate for a switch on string(b)
	case "l":
		return CmdLock
	case "r":
		return CmdRelease
	case "n":
		return CmdRenew
	case "e":
		return CmdEnqueue
	case "w":
		return CmdWait
	case "sl":
		return CmdSemLock
	case "sr":
		return CmdSemRelease
	case "sn":
		return CmdSemRenew
	case "se":
		return CmdSemEnqueue
	case "sw":
		return CmdSemWait
	case "auth":
		return CmdAuth
	case "listen":
		return CmdListen
	case "unlisten":
		return CmdUnlisten
	case "signal":
		return CmdSignal
	case "ping":
		return CmdPing
	case "stats":
		return CmdStats
	case "inspect":
		return CmdInspect
	case "name":
		return CmdName
	case "session":
		return CmdSession
	case "resume":
		return CmdResume
	case "bye":
		return CmdBye
	case "cluster":
		return CmdCluster
	}
	return CmdUnknown
}

// hasKey reports whether the key line of c is a key, pattern or channel that
// must be validated and returned (all verbs except auth, ping, stats, name,
// session, bye and cluster; the key line of resume is the session id).
func (c Command) hasKey() bool {
	switch c {
	case CmdUnknown, CmdAuth, CmdPing, CmdStats, CmdName, CmdSession, CmdBye, CmdCluster:
		return false
	}
	return int(c) < numCommands
}

// argCap returns the byte cap of the arg line (line 3) of c.
func (c Command) argCap() int {
	if c == CmdSignal || c == CmdAuth {
		return MaxLongLine
	}
	return MaxLine
}
