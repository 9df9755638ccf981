package imapscript

import "fmt"

// Point is where in a session a Rule applies: the greeting, or a kind of
// command.
type Point string

// Points. A UID command and its plain form are distinct points (UIDExpunge
// and Expunge), because popbridge must never send the unscoped one when it
// has the choice.
const (
	Greeting     Point = "greeting"
	Capability   Point = "CAPABILITY"
	ID           Point = "ID"
	Login        Point = "LOGIN" // LOGIN and AUTHENTICATE
	Select       Point = "SELECT"
	Status       Point = "STATUS"
	List         Point = "FETCH"      // a FETCH without a body section (the listing)
	FetchBody    Point = "FETCH BODY" // a FETCH of BODY[...] or BODY.PEEK[...]
	Store        Point = "STORE"
	Search       Point = "SEARCH"
	UIDExpunge   Point = "UID EXPUNGE"
	Expunge      Point = "EXPUNGE" // also CLOSE, which expunges silently
	Copy         Point = "COPY"
	Move         Point = "MOVE"
	Create       Point = "CREATE"
	Noop         Point = "NOOP"
	Logout       Point = "LOGOUT"
	OtherCommand Point = "other"
)

// Step is what the server does at a Point instead of (or after) behaving.
type Step int

const (
	// Normal answers as a correct IMAP server would.
	Normal Step = iota
	// Hang never answers, and answers nothing after: later commands are
	// read and recorded, the connection stays open until the client or
	// Close ends it.
	Hang
	// Bye sends "* BYE" and closes, instead of answering.
	Bye
	// No answers with a tagged NO (Rule.Text, default "[UNAVAILABLE]
	// scripted failure") and changes nothing.
	No
	// Bad answers with a tagged BAD.
	Bad
	// Cut closes the connection without answering.
	Cut
	// CutAfter does the command and answers it, then closes: at Store,
	// that is the cut between UID STORE and UID EXPUNGE.
	CutAfter
	// HangMidBody (FetchBody only) sends the literal's first half, then
	// hangs.
	HangMidBody
	// CutMidBody (FetchBody only) sends the literal's first half, then
	// closes.
	CutMidBody
	// LiteralOverrun (FetchBody only) sends more octets than the literal
	// announces: the extra octets land where the protocol expects syntax.
	LiteralOverrun
	// EndlessLine starts an untagged response line that never ends; the
	// server writes it until the client goes away.
	EndlessLine
	// HugeLiteral starts an untagged response with a 2 GB literal outside
	// any message body, and streams filler until the client goes away.
	HugeLiteral
	// UnderstateSize (List only) reports an RFC822.SIZE 10 octets smaller
	// than the body the server will deliver.
	UnderstateSize
	// ChangeUIDValidity does the command, then gives the mailbox a new
	// UIDVALIDITY, as a mailbox rebuilt behind the session's back (at
	// Select: between login and QUIT).
	ChangeUIDValidity
	// FlagUpdateFirst (FetchBody only) sends, before each requested
	// message's answer, an unsolicited flag update for it carrying its UID
	// ("* 3 FETCH (UID 9 MODSEQ (12) FLAGS (\Seen))"), as a server does when
	// another session changed the message's flags: Dovecot after a UID
	// STORE once CONDSTORE is on, any server once QRESYNC is enabled.
	FlagUpdateFirst
)

var stepNames = [...]string{"Normal", "Hang", "Bye", "No", "Bad", "Cut", "CutAfter", "HangMidBody",
	"CutMidBody", "LiteralOverrun", "EndlessLine", "HugeLiteral", "UnderstateSize", "ChangeUIDValidity",
	"FlagUpdateFirst"}

func (s Step) String() string {
	if int(s) < len(stepNames) {
		return stepNames[s]
	}
	return fmt.Sprintf("Step(%d)", int(s))
}

// Rule scripts one misbehaviour.
type Rule struct {
	At   Point
	Step Step
	// User limits the rule to sessions logged in as User (at Login: to
	// LOGIN attempts for User); "" applies to every session. Greeting
	// rules cannot be limited to a user.
	User string
	// Times is how many matching commands the rule applies to before it
	// expires; 0 means every one.
	Times int
	// Text replaces the default text of a No or Bad answer.
	Text string
}

// rule is a Rule with its remaining uses.
type rule struct {
	Rule
	left int // < 0: unlimited
}
