package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"
)

// sqlStore is the Store of both engines: the SQL is written once, with ?
// placeholders and only what SQLite (3.35+) and PostgreSQL share (ON
// CONFLICT upserts, RETURNING). The engines differ in how they open, in
// their migrations' types, and in their locks.
type sqlStore struct {
	db       *sql.DB
	postgres bool // $n placeholders instead of ?
	locks    locker
	// closers run at Close after the locks and db.Close.
	closers []func() error
}

// locker takes session locks for Store.Lock.
type locker interface {
	lock(ctx context.Context, key string) (release func(), err error)
	close() error
}

// batchRows caps the rows of one multi-row INSERT: well under SQLite's 32766
// and PostgreSQL's 65535 bound parameters.
const batchRows = 200

// rebind turns ? placeholders into PostgreSQL's $1, $2, ... The store's
// queries have no ? inside literals.
func (s *sqlStore) rebind(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// exec runs a statement outside a transaction and returns the rows it
// affected.
func (s *sqlStore) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(query), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// inTx runs fn in one transaction, committed when fn returns nil.
func (s *sqlStore) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// insertRows inserts rows (each of the same number of values) with
// multi-row INSERTs of at most batchRows rows: head is "INSERT INTO t (a, b)
// VALUES", tail what follows the values (ON CONFLICT ...).
func (s *sqlStore) insertRows(ctx context.Context, tx *sql.Tx, head, tail string, rows [][]any) error {
	for len(rows) > 0 {
		n := min(len(rows), batchRows)
		var b strings.Builder
		b.WriteString(head)
		args := make([]any, 0, n*len(rows[0]))
		for i, row := range rows[:n] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(" (?")
			b.WriteString(strings.Repeat(", ?", len(row)-1))
			b.WriteByte(')')
			args = append(args, row...)
		}
		b.WriteByte(' ')
		b.WriteString(tail)
		if _, err := tx.ExecContext(ctx, s.rebind(b.String()), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// query runs a query and calls scan for each row.
func (s *sqlStore) query(ctx context.Context, scan func(*sql.Rows) error, query string, args ...any) error {
	rows, err := s.db.QueryContext(ctx, s.rebind(query), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// us and fromUS convert times to the schema's microseconds since the epoch;
// the zero time is 0 and back.
func us(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromUS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func (s *sqlStore) Ping(ctx context.Context) error {
	return wrap("ping", s.db.PingContext(ctx))
}

func (s *sqlStore) Close() error {
	errs := []error{s.locks.close(), s.db.Close()}
	for _, c := range s.closers {
		errs = append(errs, c())
	}
	return wrap("close", errors.Join(errs...))
}

// --- OAuth2 mailboxes and device credentials ---

const mailboxColumns = "mailbox, provider, state, sealed_grant, version, updated_us"

func scanMailbox(sc interface{ Scan(...any) error }) (Mailbox, error) {
	var m Mailbox
	var updated int64
	err := sc.Scan(&m.Mailbox, &m.Provider, &m.State, &m.SealedGrant, &m.Version, &updated)
	m.UpdatedAt = fromUS(updated)
	return m, err
}

func (s *sqlStore) GetMailbox(ctx context.Context, mailbox string) (Mailbox, error) {
	row := s.db.QueryRowContext(ctx, s.rebind("SELECT "+mailboxColumns+" FROM mailboxes WHERE mailbox = ?"), mailbox)
	m, err := scanMailbox(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, ErrNotFound
	}
	return m, wrap("get mailbox", err)
}

func (s *sqlStore) ListMailboxes(ctx context.Context) ([]Mailbox, error) {
	var out []Mailbox
	err := s.query(ctx, func(r *sql.Rows) error {
		m, err := scanMailbox(r)
		out = append(out, m)
		return err
	}, "SELECT "+mailboxColumns+" FROM mailboxes ORDER BY mailbox")
	return out, wrap("list mailboxes", err)
}

func (s *sqlStore) PutMailbox(ctx context.Context, m Mailbox) (Mailbox, error) {
	next := m
	next.Version = m.Version + 1
	next.UpdatedAt = time.Now().UTC().Truncate(time.Microsecond)
	var n int64
	var err error
	if m.Version == 0 {
		n, err = s.exec(ctx, "INSERT INTO mailboxes ("+mailboxColumns+") VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (mailbox) DO NOTHING",
			next.Mailbox, next.Provider, next.State, next.SealedGrant, next.Version, us(next.UpdatedAt))
	} else {
		n, err = s.exec(ctx, "UPDATE mailboxes SET provider = ?, state = ?, sealed_grant = ?, version = ?, updated_us = ? WHERE mailbox = ? AND version = ?",
			next.Provider, next.State, next.SealedGrant, next.Version, us(next.UpdatedAt), next.Mailbox, m.Version)
	}
	if err != nil {
		return Mailbox{}, wrap("put mailbox", err)
	}
	if n == 0 {
		return Mailbox{}, ErrConflict
	}
	return next, nil
}

func (s *sqlStore) DeleteMailbox(ctx context.Context, mailbox string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.rebind("DELETE FROM mailboxes WHERE mailbox = ?"), mailbox)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errors.Join(err, ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, s.rebind("DELETE FROM device_credentials WHERE mailbox = ?"), mailbox)
		return err
	})
	return wrap("delete mailbox", err)
}

func (s *sqlStore) PutDeviceCredential(ctx context.Context, c DeviceCredential) error {
	_, err := s.exec(ctx, `INSERT INTO device_credentials (mailbox, device, hash, created_us) VALUES (?, ?, ?, ?)
		ON CONFLICT (mailbox, device) DO UPDATE SET hash = excluded.hash, created_us = excluded.created_us`,
		c.Mailbox, c.Device, c.Hash, us(c.CreatedAt))
	return wrap("put device credential", err)
}

func (s *sqlStore) DeviceCredentials(ctx context.Context, mailbox string) ([]DeviceCredential, error) {
	var out []DeviceCredential
	err := s.query(ctx, func(r *sql.Rows) error {
		c := DeviceCredential{Mailbox: mailbox}
		var created int64
		err := r.Scan(&c.Device, &c.Hash, &created)
		c.CreatedAt = fromUS(created)
		out = append(out, c)
		return err
	}, "SELECT device, hash, created_us FROM device_credentials WHERE mailbox = ? ORDER BY device", mailbox)
	return out, wrap("device credentials", err)
}

func (s *sqlStore) DeleteDeviceCredential(ctx context.Context, mailbox, device string) error {
	n, err := s.exec(ctx, "DELETE FROM device_credentials WHERE mailbox = ? AND device = ?", mailbox, device)
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return wrap("delete device credential", err)
}

// --- UIDL continuity ---

// selectUIDLs is the start of every query for UIDL records; scanUIDLs
// appends each row to out.
const selectUIDLs = "SELECT uidvalidity, uid, uidl, size, message_id, date, header_hash FROM uidls WHERE mailbox_key = ? "

func scanUIDLs(out *[]UIDLRecord) func(*sql.Rows) error {
	return func(r *sql.Rows) error {
		var rec UIDLRecord
		var uidv, uid int64
		err := r.Scan(&uidv, &uid, &rec.UIDL, &rec.Size, &rec.MessageID, &rec.Date, &rec.HeaderHash)
		rec.UIDValidity, rec.UID = uint32(uidv), uint32(uid)
		*out = append(*out, rec)
		return err
	}
}

func (s *sqlStore) UIDLMap(ctx context.Context, key string) ([]UIDLRecord, error) {
	var out []UIDLRecord
	err := s.query(ctx, scanUIDLs(&out), selectUIDLs+"ORDER BY uidvalidity, uid, uidl", key)
	return out, wrap("uidl map", err)
}

func (s *sqlStore) UIDLsFor(ctx context.Context, key string, uidValidity uint32, uids []uint32, uidls []string) ([]UIDLRecord, error) {
	var out []UIDLRecord
	scan := scanUIDLs(&out)
	const cols = selectUIDLs + "AND "
	// Both lookups use an index: (mailbox_key, uidvalidity, uid) and the
	// primary key (mailbox_key, uidl). A record may come twice; callers
	// take a set.
	for len(uids) > 0 {
		n := min(len(uids), batchRows)
		args := []any{key, int64(uidValidity)}
		for _, u := range uids[:n] {
			args = append(args, int64(u))
		}
		q := cols + `uidvalidity = ? AND uid IN (?` + strings.Repeat(",?", n-1) + `)`
		if err := s.query(ctx, scan, q, args...); err != nil {
			return nil, wrap("uidls for", err)
		}
		uids = uids[n:]
	}
	for len(uidls) > 0 {
		n := min(len(uidls), batchRows)
		args := []any{key}
		for _, u := range uidls[:n] {
			args = append(args, u)
		}
		q := cols + `uidl IN (?` + strings.Repeat(",?", n-1) + `)`
		if err := s.query(ctx, scan, q, args...); err != nil {
			return nil, wrap("uidls for", err)
		}
		uidls = uidls[n:]
	}
	return out, nil
}

func (s *sqlStore) PutUIDLs(ctx context.Context, key string, recs []UIDLRecord) error {
	if len(recs) == 0 {
		return nil
	}
	// One statement may not upsert a row twice (PostgreSQL refuses): the
	// last record of a UIDL wins, as if they were put one by one.
	last := make(map[string]int, len(recs))
	for i, r := range recs {
		last[r.UIDL] = i
	}
	rows := make([][]any, 0, len(last))
	for i, r := range recs {
		if last[r.UIDL] == i {
			rows = append(rows, []any{key, r.UIDL, int64(r.UIDValidity), int64(r.UID), r.Size, r.MessageID, r.Date, r.HeaderHash})
		}
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return s.insertRows(ctx, tx,
			"INSERT INTO uidls (mailbox_key, uidl, uidvalidity, uid, size, message_id, date, header_hash) VALUES",
			`ON CONFLICT (mailbox_key, uidl) DO UPDATE SET uidvalidity = excluded.uidvalidity, uid = excluded.uid,
				size = excluded.size, message_id = excluded.message_id, date = excluded.date, header_hash = excluded.header_hash`,
			rows)
	})
	return wrap("put uidls", err)
}

// --- Device ledger ---

func (s *sqlStore) TouchDevice(ctx context.Context, key, device string, at time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO devices (mailbox_key, device, last_seen_us) VALUES (?, ?, ?)
		ON CONFLICT (mailbox_key, device) DO UPDATE SET last_seen_us =
			CASE WHEN excluded.last_seen_us > devices.last_seen_us THEN excluded.last_seen_us ELSE devices.last_seen_us END`,
		key, device, us(at))
	return wrap("touch device", err)
}

func (s *sqlStore) Devices(ctx context.Context, key string) ([]Device, error) {
	var out []Device
	err := s.query(ctx, func(r *sql.Rows) error {
		var d Device
		var seen int64
		err := r.Scan(&d.Name, &seen)
		d.LastSeen = fromUS(seen)
		out = append(out, d)
		return err
	}, "SELECT device, last_seen_us FROM devices WHERE mailbox_key = ? ORDER BY device", key)
	return out, wrap("devices", err)
}

func (s *sqlStore) MarkDone(ctx context.Context, key, device string, uidValidity uint32, uids []uint32, at time.Time) error {
	if len(uids) == 0 {
		return nil
	}
	rows := make([][]any, 0, len(uids))
	seen := make(map[uint32]bool, len(uids))
	for _, uid := range uids {
		if !seen[uid] {
			seen[uid] = true
			rows = append(rows, []any{key, int64(uidValidity), int64(uid), device, us(at)})
		}
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return s.insertRows(ctx, tx, "INSERT INTO done_marks (mailbox_key, uidvalidity, uid, device, at_us) VALUES",
			"ON CONFLICT (mailbox_key, uidvalidity, uid, device) DO NOTHING", rows)
	})
	return wrap("mark done", err)
}

func (s *sqlStore) Done(ctx context.Context, key string, uidValidity uint32) ([]DoneRecord, error) {
	var out []DoneRecord
	err := s.query(ctx, func(r *sql.Rows) error {
		d := DoneRecord{UIDValidity: uidValidity}
		var uid, at int64
		err := r.Scan(&uid, &d.Device, &at)
		d.UID, d.At = uint32(uid), fromUS(at)
		out = append(out, d)
		return err
	}, "SELECT uid, device, at_us FROM done_marks WHERE mailbox_key = ? AND uidvalidity = ? ORDER BY uid, device",
		key, int64(uidValidity))
	return out, wrap("done marks", err)
}

func (s *sqlStore) ForgetDone(ctx context.Context, key string, uidValidity uint32, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// A statement per batchRows UIDs, not per UID: a session can find
		// thousands of messages gone.
		return s.execIn(ctx, tx, "DELETE FROM done_marks WHERE mailbox_key = ? AND uidvalidity = ? AND uid IN ",
			[]any{key, int64(uidValidity)}, len(uids), func(i int) any { return int64(uids[i]) })
	})
	return wrap("forget done marks", err)
}

// --- Deletion journal ---

const journalColumns = `time_us, user_name, device, client_addr, session_id, mailbox, uidvalidity, uid,
	message_id, date, size, policy, action, outcome, detail`

func (s *sqlStore) AppendJournal(ctx context.Context, entries []JournalEntry) ([]int64, error) {
	ids := make([]int64, 0, len(entries))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, s.rebind("INSERT INTO journal ("+journalColumns+
			") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, e := range entries {
			if e.Outcome == "" {
				e.Outcome = OutcomePending
			}
			var id int64
			if err := stmt.QueryRowContext(ctx, us(e.Time), e.User, e.Device, e.ClientAddr, e.SessionID, e.Mailbox,
				int64(e.UIDValidity), int64(e.UID), e.MessageID, e.Date, e.Size, e.Policy, e.Action, e.Outcome, e.Detail,
			).Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("append journal", err)
	}
	return ids, nil
}

func (s *sqlStore) SetJournalOutcome(ctx context.Context, ids []int64, outcome string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return s.execIn(ctx, tx, "UPDATE journal SET outcome = ? WHERE id IN ",
			[]any{outcome}, len(ids), func(i int) any { return ids[i] })
	})
	return wrap("set journal outcome", err)
}

// execIn runs query, which ends in "IN ", once per batchRows of its n
// keys (key(i) is the i-th), each time with the fixed arguments first and
// then the batch's keys in a parenthesized list.
func (s *sqlStore) execIn(ctx context.Context, tx *sql.Tx, query string, fixed []any, n int, key func(int) any) error {
	for start := 0; start < n; start += batchRows {
		end := min(n, start+batchRows)
		args := append([]any(nil), fixed...)
		for i := start; i < end; i++ {
			args = append(args, key(i))
		}
		q := query + "(?" + strings.Repeat(", ?", end-start-1) + ")"
		if _, err := tx.ExecContext(ctx, s.rebind(q), args...); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqlStore) Journal(ctx context.Context, q JournalQuery) ([]JournalEntry, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if q.User != "" {
		add("user_name = ?", q.User)
	}
	if q.Device != "" {
		add("device = ?", q.Device)
	}
	if q.MessageID != "" {
		add("message_id = ?", q.MessageID)
	}
	if !q.Since.IsZero() {
		add("time_us >= ?", us(q.Since))
	}
	if !q.Until.IsZero() {
		add("time_us < ?", us(q.Until))
	}
	query := "SELECT id, " + journalColumns + " FROM journal"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY time_us, id"
	if q.Limit > 0 {
		query += " LIMIT " + strconv.Itoa(q.Limit)
	}
	var out []JournalEntry
	err := s.query(ctx, func(r *sql.Rows) error {
		var e JournalEntry
		var t, uidv, uid int64
		err := r.Scan(&e.ID, &t, &e.User, &e.Device, &e.ClientAddr, &e.SessionID, &e.Mailbox, &uidv, &uid,
			&e.MessageID, &e.Date, &e.Size, &e.Policy, &e.Action, &e.Outcome, &e.Detail)
		e.Time, e.UIDValidity, e.UID = fromUS(t), uint32(uidv), uint32(uid)
		out = append(out, e)
		return err
	}, query, args...)
	return out, wrap("journal", err)
}

func (s *sqlStore) PruneJournal(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.exec(ctx, "DELETE FROM journal WHERE time_us < ?", us(before))
	return n, wrap("prune journal", err)
}

// --- Restores ---

func (s *sqlStore) QueueRestore(ctx context.Context, r Restore) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, s.rebind(`INSERT INTO restores
		(user_name, since_us, message_id, journal_id, requested_us, outcome, finished_us)
		VALUES (?, ?, ?, ?, ?, ?, 0) RETURNING id`),
		r.User, us(r.Since), r.MessageID, r.JournalID, us(r.RequestedAt), OutcomePending).Scan(&id)
	return id, wrap("queue restore", err)
}

func (s *sqlStore) PendingRestores(ctx context.Context, user string) ([]Restore, error) {
	var out []Restore
	err := s.query(ctx, func(rows *sql.Rows) error {
		r := Restore{User: user}
		var since, requested, finished int64
		err := rows.Scan(&r.ID, &since, &r.MessageID, &r.JournalID, &requested, &r.Outcome, &finished)
		r.Since, r.RequestedAt, r.FinishedAt = fromUS(since), fromUS(requested), fromUS(finished)
		out = append(out, r)
		return err
	}, `SELECT id, since_us, message_id, journal_id, requested_us, outcome, finished_us FROM restores
		WHERE user_name = ? AND outcome = ? ORDER BY id`, user, OutcomePending)
	return out, wrap("pending restores", err)
}

func (s *sqlStore) FinishRestore(ctx context.Context, id int64, outcome string) error {
	n, err := s.exec(ctx, "UPDATE restores SET outcome = ?, finished_us = ? WHERE id = ?", outcome, us(time.Now()), id)
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return wrap("finish restore", err)
}

// --- Locks ---

func (s *sqlStore) Lock(ctx context.Context, key string) (func(), error) {
	release, err := s.locks.lock(ctx, key)
	return release, wrap("lock", err)
}
