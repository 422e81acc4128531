//! TCG Storage sessions, as pure functions: the two method calls of a PSID Revert and the parser of
//! the drive's answers. A PSID Revert resets a self-encrypting drive to its factory state: it
//! destroys its media encryption key (every user block becomes unreadable noise) and removes every
//! password and locking range, so a drive locked by its former owner can be wiped again.
//!
//! The flow (TCG Storage Opal SSC Feature Set: PSID 1.00; Linux `block/sed-opal.c`
//! `opal_psid_revert` does the same):
//!
//! 1. IF-SEND a Session Manager `StartSession` (Core §5.2.3.1) to the SSC's base ComID (from Level 0
//!    Discovery, [`super::tcg`]) that opens a write session to the Admin SP and authenticates the PSID
//!    authority with the 32 characters of the drive label as `HostChallenge`;
//! 2. IF-RECV the `SyncSession` answer (Core §5.2.3.2): the drive's TPer session number (TSN) and
//!    ours (HSN), or a method status such as NOT_AUTHORIZED for a wrong PSID;
//! 3. IF-SEND `Revert` on the Admin SP object (Opal SSC 2.01 §5.1.2) inside that session;
//! 4. IF-RECV its method status. The drive ends the session itself after a Revert of the Admin SP.
//!
//! Every message is a ComPacket (20 bytes) holding one Packet (24 bytes) holding one Data SubPacket
//! (12 bytes) of tokens (Core §3.2.3), padded to a multiple of four bytes. Values were checked
//! against the Linux kernel (`block/opal_proto.h`, `block/sed-opal.c`) and sedutil
//! (`Common/DtaLexicon.h`).

/// Security protocol of TCG sessions (the same as Level 0 Discovery's).
pub const PROTOCOL: u8 = 0x01;

/// Bytes of one IF-SEND / IF-RECV transfer (four 512-byte blocks; what the kernel uses too).
pub const TRANSFER_LEN: usize = 2048;

/// A UID: the 8-byte name of a TCG object or method (Core §3.2.5.1).
pub type Uid = [u8; 8];

/// The Session Manager, on which StartSession is invoked (Core §5.2.1).
pub const SMUID: Uid = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff];
/// Session Manager method StartSession (Core §5.2.3.1).
pub const START_SESSION: Uid = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x02];
/// Session Manager method SyncSession, the answer to StartSession (Core §5.2.3.2).
pub const SYNC_SESSION: Uid = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x03];
/// The Admin SP object (Opal SSC 2.01 §4.2, SP table).
pub const ADMIN_SP: Uid = [0x00, 0x00, 0x02, 0x05, 0x00, 0x00, 0x00, 0x01];
/// The PSID authority of the Admin SP (Opal SSC Feature Set: PSID 1.00).
pub const PSID_AUTHORITY: Uid = [0x00, 0x00, 0x00, 0x09, 0x00, 0x01, 0xff, 0x01];
/// Method Revert on an SP object (Opal SSC 2.01 §5.1.2).
pub const REVERT: Uid = [0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x02, 0x02];

/// Our host session number (any non-zero number; the kernel uses 41h too).
pub const HOST_SESSION: u32 = 0x41;

/// Control tokens (Core §3.2.2.3.2, Table 04).
pub mod token {
    /// StartList.
    pub const START_LIST: u8 = 0xf0;
    /// EndList.
    pub const END_LIST: u8 = 0xf1;
    /// StartName.
    pub const START_NAME: u8 = 0xf2;
    /// EndName.
    pub const END_NAME: u8 = 0xf3;
    /// Call.
    pub const CALL: u8 = 0xf8;
    /// EndOfData.
    pub const END_OF_DATA: u8 = 0xf9;
    /// EndOfSession.
    pub const END_OF_SESSION: u8 = 0xfa;
    /// Empty atom (filler).
    pub const EMPTY: u8 = 0xff;
}

/// Method status codes (Core §5.1.5, Table 166).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodStatus {
    /// 00h SUCCESS.
    Success,
    /// 01h NOT_AUTHORIZED: for StartSession, the HostChallenge (the PSID) is wrong.
    NotAuthorized,
    /// 03h SP_BUSY.
    SpBusy,
    /// 04h SP_FAILED.
    SpFailed,
    /// 05h SP_DISABLED.
    SpDisabled,
    /// 06h SP_FROZEN.
    SpFrozen,
    /// 07h NO_SESSIONS_AVAILABLE.
    NoSessionsAvailable,
    /// 08h UNIQUENESS_CONFLICT.
    UniquenessConflict,
    /// 09h INSUFFICIENT_SPACE.
    InsufficientSpace,
    /// 0Ah INSUFFICIENT_ROWS.
    InsufficientRows,
    /// 0Ch INVALID_PARAMETER.
    InvalidParameter,
    /// 0Fh TPER_MALFUNCTION.
    TperMalfunction,
    /// 10h TRANSACTION_FAILURE.
    TransactionFailure,
    /// 11h RESPONSE_OVERFLOW.
    ResponseOverflow,
    /// 12h AUTHORITY_LOCKED_OUT: too many wrong tries; the drive refuses until it is power-cycled.
    AuthorityLockedOut,
    /// 3Fh FAIL.
    Fail,
    /// Any other (obsolete or reserved) value.
    Other(u8),
}

impl MethodStatus {
    /// The status from its code.
    pub fn from_code(code: u8) -> MethodStatus {
        match code {
            0x00 => Self::Success,
            0x01 => Self::NotAuthorized,
            0x03 => Self::SpBusy,
            0x04 => Self::SpFailed,
            0x05 => Self::SpDisabled,
            0x06 => Self::SpFrozen,
            0x07 => Self::NoSessionsAvailable,
            0x08 => Self::UniquenessConflict,
            0x09 => Self::InsufficientSpace,
            0x0a => Self::InsufficientRows,
            0x0c => Self::InvalidParameter,
            0x0f => Self::TperMalfunction,
            0x10 => Self::TransactionFailure,
            0x11 => Self::ResponseOverflow,
            0x12 => Self::AuthorityLockedOut,
            0x3f => Self::Fail,
            other => Self::Other(other),
        }
    }

    /// The code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0x00,
            Self::NotAuthorized => 0x01,
            Self::SpBusy => 0x03,
            Self::SpFailed => 0x04,
            Self::SpDisabled => 0x05,
            Self::SpFrozen => 0x06,
            Self::NoSessionsAvailable => 0x07,
            Self::UniquenessConflict => 0x08,
            Self::InsufficientSpace => 0x09,
            Self::InsufficientRows => 0x0a,
            Self::InvalidParameter => 0x0c,
            Self::TperMalfunction => 0x0f,
            Self::TransactionFailure => 0x10,
            Self::ResponseOverflow => 0x11,
            Self::AuthorityLockedOut => 0x12,
            Self::Fail => 0x3f,
            Self::Other(c) => c,
        }
    }

    /// The spec's name, for the certificate's evidence (`0x01 NOT_AUTHORIZED`).
    pub fn describe(self) -> String {
        let name = match self {
            Self::Success => "SUCCESS",
            Self::NotAuthorized => "NOT_AUTHORIZED",
            Self::SpBusy => "SP_BUSY",
            Self::SpFailed => "SP_FAILED",
            Self::SpDisabled => "SP_DISABLED",
            Self::SpFrozen => "SP_FROZEN",
            Self::NoSessionsAvailable => "NO_SESSIONS_AVAILABLE",
            Self::UniquenessConflict => "UNIQUENESS_CONFLICT",
            Self::InsufficientSpace => "INSUFFICIENT_SPACE",
            Self::InsufficientRows => "INSUFFICIENT_ROWS",
            Self::InvalidParameter => "INVALID_PARAMETER",
            Self::TperMalfunction => "TPER_MALFUNCTION",
            Self::TransactionFailure => "TRANSACTION_FAILURE",
            Self::ResponseOverflow => "RESPONSE_OVERFLOW",
            Self::AuthorityLockedOut => "AUTHORITY_LOCKED_OUT",
            Self::Fail => "FAIL",
            Self::Other(_) => "reserved",
        };
        format!("{:#04x} {name}", self.code())
    }
}

/// Token writer for one Data SubPacket's payload.
#[derive(Debug, Default)]
struct Tokens(Vec<u8>);

impl Tokens {
    fn raw(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }

    /// An unsigned integer: a tiny atom for 0..=63, else a short atom (Core §3.2.2.3.1.1-2) holding
    /// the fewest big-endian bytes.
    fn uint(&mut self, v: u64) -> &mut Self {
        if v < 0x40 {
            return self.raw(u8::try_from(v).unwrap_or(0));
        }
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let body = &bytes[skip..];
        // body.len() is 1..=8: fits the short atom's 4-bit length.
        self.raw(0x80 | u8::try_from(body.len()).unwrap_or(8));
        self.0.extend_from_slice(body);
        self
    }

    /// A byte sequence: a short atom (80h | B=20h | length) up to 15 bytes, a medium atom
    /// (C0h | B=10h | length 10:8, then length 7:0) up to 2047 (Core §3.2.2.3.1.2-3).
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        if b.len() <= 15 {
            self.raw(0xa0 | u8::try_from(b.len()).unwrap_or(0));
        } else {
            let len = u16::try_from(b.len().min(0x7ff)).unwrap_or(0x7ff);
            self.raw(0xd0 | u8::try_from(len >> 8).unwrap_or(0));
            self.raw(u8::try_from(len & 0xff).unwrap_or(0));
        }
        self.0.extend_from_slice(b);
        self
    }
}

/// A method call's tokens (Core §3.2.4.1 "Method Invocation"): `Call InvokingID MethodID [ params ]
/// EndOfData [ 0 0 0 ]` (the trailing status list of a host call is always zeros).
fn call(invoking: &Uid, method: &Uid, params: impl FnOnce(&mut Tokens)) -> Vec<u8> {
    let mut t = Tokens::default();
    t.raw(token::CALL).bytes(invoking).bytes(method).raw(token::START_LIST);
    params(&mut t);
    t.raw(token::END_LIST).raw(token::END_OF_DATA);
    t.raw(token::START_LIST).uint(0).uint(0).uint(0).raw(token::END_LIST);
    t.0
}

/// Wraps a SubPacket payload into SubPacket, Packet and ComPacket headers (Core §3.2.3.1-3):
///
/// - ComPacket: reserved (4), ComID (2) + ComID extension (2), OutstandingData (4), MinTransfer (4),
///   Length (4) of what follows;
/// - Packet: TSN (4), HSN (4), SeqNumber (4), reserved (2), AckType (2), Acknowledgement (4),
///   Length (4);
/// - Data SubPacket: reserved (6), Kind (2) = 0 (data), Length (4) of the payload, unpadded;
///
/// then the payload padded to a multiple of four, and the whole to [`TRANSFER_LEN`] with zeros.
pub fn compacket(comid: u16, tsn: u32, hsn: u32, payload: &[u8]) -> Vec<u8> {
    let padded = payload.len().div_ceil(4) * 4;
    let sub_len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let pkt_len = u32::try_from(12 + padded).unwrap_or(u32::MAX);
    let com_len = u32::try_from(24 + 12 + padded).unwrap_or(u32::MAX);
    let mut b = Vec::with_capacity(TRANSFER_LEN);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&comid.to_be_bytes());
    b.extend_from_slice(&[0; 2]);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&com_len.to_be_bytes());
    b.extend_from_slice(&tsn.to_be_bytes());
    b.extend_from_slice(&hsn.to_be_bytes());
    b.extend_from_slice(&[0; 12]);
    b.extend_from_slice(&pkt_len.to_be_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&sub_len.to_be_bytes());
    b.extend_from_slice(payload);
    b.resize(56 + padded, 0);
    b.resize(b.len().max(TRANSFER_LEN), 0);
    b
}

/// `SMUID.StartSession[HostSessionID = 41h, SPID = Admin SP, Write = 1, HostChallenge (name 0) =
/// psid, HostSigningAuthority (name 3) = PSID authority]` (Core §5.2.3.1), outside any session
/// (TSN = HSN = 0).
pub fn start_psid_session(comid: u16, psid: &[u8]) -> Vec<u8> {
    let payload = call(&SMUID, &START_SESSION, |t| {
        t.uint(u64::from(HOST_SESSION)).bytes(&ADMIN_SP).uint(1);
        t.raw(token::START_NAME).uint(0).bytes(psid).raw(token::END_NAME);
        t.raw(token::START_NAME)
            .uint(3)
            .bytes(&PSID_AUTHORITY)
            .raw(token::END_NAME);
    });
    compacket(comid, 0, 0, &payload)
}

/// `AdminSP.Revert[]` (Opal SSC 2.01 §5.1.2) in session `tsn`/`hsn`.
pub fn revert_admin_sp(comid: u16, tsn: u32, hsn: u32) -> Vec<u8> {
    compacket(comid, tsn, hsn, &call(&ADMIN_SP, &REVERT, |_| {}))
}

/// A token of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An unsigned integer (tiny, short or medium atom without the B and S bits).
    Uint(u64),
    /// A signed integer, not decoded (never needed here).
    Int,
    /// A byte sequence.
    Bytes(Vec<u8>),
    /// A control token (F0h-FFh).
    Control(u8),
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Shorter than the three headers.
    #[error("the answer is {0} bytes, shorter than its 56 bytes of headers")]
    Short(usize),
    /// The drive has not produced its answer yet (OutstandingData > 0 with MinTransfer 0).
    #[error("the drive has not finished its answer yet")]
    Pending,
    /// Nothing in the ComPacket.
    #[error("the answer is empty (ComPacket length 0)")]
    Empty,
    /// A length runs past the end.
    #[error("a token or header length runs past the end of the answer")]
    Truncated,
    /// A uint wider than 8 bytes.
    #[error("an integer of {0} bytes")]
    Wide(usize),
    /// No method status list at the end.
    #[error("the answer carries no method status list")]
    NoStatus,
    /// Not the SyncSession of our StartSession.
    #[error("the answer is not SyncSession for our StartSession")]
    NotSync,
}

/// A drive's answer: its Packet's session numbers and its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Packet TSN.
    pub tsn: u32,
    /// Packet HSN.
    pub hsn: u32,
    /// The Data SubPacket's tokens, empty atoms left out.
    pub tokens: Vec<Token>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads an IF-RECV answer: the headers (Core §3.2.3) and the tokens of its first Data SubPacket
/// (Core §3.2.2.3: 00-7Fh tiny, 80-BFh short, C0-DFh medium, E0-E3h long atoms, F0h and up control).
pub fn parse_answer(d: &[u8]) -> Result<Answer, AnswerError> {
    if d.len() < 56 {
        return Err(AnswerError::Short(d.len()));
    }
    let (outstanding, min_transfer, com_len) = (be32(d, 8), be32(d, 12), be32(d, 16));
    if com_len == 0 {
        return Err(if outstanding != 0 && min_transfer == 0 {
            AnswerError::Pending
        } else {
            AnswerError::Empty
        });
    }
    let (tsn, hsn) = (be32(d, 20), be32(d, 24));
    let sub_len = usize::try_from(be32(d, 52)).unwrap_or(usize::MAX);
    let end = 56usize
        .checked_add(sub_len)
        .filter(|e| *e <= d.len())
        .ok_or(AnswerError::Truncated)?;
    let mut tokens = Vec::new();
    let mut at = 56;
    while at < end {
        let h = d[at];
        let (header, len, bytes, signed) = match h {
            0x00..=0x7f => {
                tokens.push(if h & 0x40 == 0 {
                    Token::Uint(u64::from(h & 0x3f))
                } else {
                    Token::Int
                });
                at += 1;
                continue;
            }
            0x80..=0xbf => (1, usize::from(h & 0x0f), h & 0x20 != 0, h & 0x10 != 0),
            0xc0..=0xdf => {
                let lo = *d.get(at + 1).ok_or(AnswerError::Truncated)?;
                (
                    2,
                    usize::from(h & 0x07) << 8 | usize::from(lo),
                    h & 0x10 != 0,
                    h & 0x08 != 0,
                )
            }
            0xe0..=0xe3 => {
                let l = d.get(at + 1..at + 4).ok_or(AnswerError::Truncated)?;
                let len = usize::from(l[0]) << 16 | usize::from(l[1]) << 8 | usize::from(l[2]);
                (4, len, h & 0x02 != 0, h & 0x01 != 0)
            }
            token::EMPTY => {
                at += 1;
                continue;
            }
            _ => {
                tokens.push(Token::Control(h));
                at += 1;
                continue;
            }
        };
        let body = d.get(at + header..at + header + len).ok_or(AnswerError::Truncated)?;
        if at + header + len > end {
            return Err(AnswerError::Truncated);
        }
        tokens.push(if bytes {
            Token::Bytes(body.to_vec())
        } else if signed {
            Token::Int
        } else {
            if len > 8 {
                return Err(AnswerError::Wide(len));
            }
            Token::Uint(body.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
        });
        at += header + len;
    }
    Ok(Answer { tsn, hsn, tokens })
}

impl Answer {
    /// The answer is only EndOfSession: the drive closed the session (Core §3.2.4.2).
    pub fn end_of_session(&self) -> bool {
        self.tokens.first() == Some(&Token::Control(token::END_OF_SESSION))
    }

    /// The method status: the first element of the list after the last EndOfData (Core §3.2.4.2
    /// "Method Response": `... EndOfData StartList status 0 0 EndList`).
    pub fn status(&self) -> Result<MethodStatus, AnswerError> {
        let eod = self
            .tokens
            .iter()
            .rposition(|t| *t == Token::Control(token::END_OF_DATA))
            .ok_or(AnswerError::NoStatus)?;
        match &self.tokens[eod + 1..] {
            [Token::Control(token::START_LIST), Token::Uint(s), Token::Uint(_), Token::Uint(_), Token::Control(token::END_LIST), ..] => {
                Ok(MethodStatus::from_code(u8::try_from(*s).unwrap_or(0x3f)))
            }
            _ => Err(AnswerError::NoStatus),
        }
    }

    /// A successful SyncSession (Core §5.2.3.2): `Call SMUID SyncSession [ HostSessionID
    /// SPSessionID ... ]` whose HostSessionID is ours. Returns (TSN, HSN) for the session's packets.
    pub fn sync_session(&self) -> Result<(u32, u32), AnswerError> {
        let t = &self.tokens;
        let is = |i: usize, want: &Token| t.get(i) == Some(want);
        if !(is(0, &Token::Control(token::CALL))
            && is(1, &Token::Bytes(SMUID.to_vec()))
            && is(2, &Token::Bytes(SYNC_SESSION.to_vec()))
            && is(3, &Token::Control(token::START_LIST)))
        {
            return Err(AnswerError::NotSync);
        }
        match (t.get(4), t.get(5)) {
            (Some(Token::Uint(hsn)), Some(Token::Uint(tsn))) if *hsn == u64::from(HOST_SESSION) => {
                Ok((u32::try_from(*tsn).map_err(|_| AnswerError::NotSync)?, HOST_SESSION))
            }
            _ => Err(AnswerError::NotSync),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PSID as printed on a label: 32 upper-case letters and digits.
    pub(crate) const PSID: &[u8; 32] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";

    /// The answer a drive gives: headers around `payload` (the same framing as ours).
    pub(crate) fn answer(comid: u16, tsn: u32, hsn: u32, payload: &[u8]) -> Vec<u8> {
        compacket(comid, tsn, hsn, payload)
    }

    /// SyncSession with our HSN 41h and the drive's TSN `tsn`, status `status`.
    pub(crate) fn sync_session(comid: u16, tsn: u32, status: u8) -> Vec<u8> {
        let mut p = vec![token::CALL, 0xa8];
        p.extend_from_slice(&SMUID);
        p.push(0xa8);
        p.extend_from_slice(&SYNC_SESSION);
        // HostSessionID 41h: a short atom (81h 41h), as 41h is past the tiny atom's 0..=63.
        p.extend_from_slice(&[token::START_LIST, 0x81, 0x41]);
        // TSN as a short atom of 4 bytes (drives use 4-byte TSNs such as 0x00001001).
        p.push(0x84);
        p.extend_from_slice(&tsn.to_be_bytes());
        p.extend_from_slice(&[
            token::END_LIST,
            token::END_OF_DATA,
            token::START_LIST,
            status,
            0,
            0,
            token::END_LIST,
        ]);
        answer(comid, 0, 0, &p)
    }

    /// A method response with an empty result list and `status`.
    pub(crate) fn method_status(comid: u16, tsn: u32, hsn: u32, status: u8) -> Vec<u8> {
        let p = [
            token::START_LIST,
            token::END_LIST,
            token::END_OF_DATA,
            token::START_LIST,
            status,
            0,
            0,
            token::END_LIST,
        ];
        answer(comid, tsn, hsn, &p)
    }

    #[test]
    fn start_session_is_byte_exact() {
        // Core 2.01 §5.2.3.1 StartSession, invoked on the Session Manager (Call = F8h, Core Table 04):
        // SMUID and the StartSession method UID as 8-byte short atoms (A8h = 80h | B 20h | length 8,
        // §3.2.2.3.1.2), HostSessionID 41h as a one-byte short atom 81h 41h (a tiny atom holds only
        // 0..=63, §3.2.2.3.1.1), SPID = Admin SP, Write = 1 (tiny atom),
        // then the named parameters HostChallenge (name 0) = the 32-byte PSID as a medium atom
        // (D0h 20h: C0h | B 10h, length 32, §3.2.2.3.1.3) and HostSigningAuthority (name 3) = the
        // PSID authority 000000090001FF01 (Opal Feature Set: PSID), EndList, EndOfData, and the
        // host's status list [0 0 0].
        let b = start_psid_session(0x07fe, PSID);
        let mut want = vec![
            0xf8, 0xa8, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xa8, 0, 0, 0, 0, 0, 0, 0xff, 0x02,
        ];
        want.extend_from_slice(&[0xf0, 0x81, 0x41, 0xa8, 0, 0, 0x02, 0x05, 0, 0, 0, 0x01, 0x01]);
        want.extend_from_slice(&[0xf2, 0x00, 0xd0, 0x20]);
        want.extend_from_slice(PSID);
        want.extend_from_slice(&[0xf3, 0xf2, 0x03, 0xa8, 0, 0, 0, 0x09, 0, 0x01, 0xff, 0x01, 0xf3]);
        want.extend_from_slice(&[0xf1, 0xf9, 0xf0, 0, 0, 0, 0xf1]);
        assert_eq!(want.len(), 88);
        // Core §3.2.3.1 ComPacket: reserved, ComID 07FEh, extension 0, OutstandingData 0,
        // MinTransfer 0, Length = 24 + 12 + 88 (the payload, already a multiple of four).
        assert_eq!(
            &b[0..20],
            &[0, 0, 0, 0, 0x07, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 124]
        );
        // §3.2.3.2 Packet: TSN 0 and HSN 0 (a Session Manager call), SeqNumber, AckType,
        // Acknowledgement 0, Length = 12 + 88.
        assert_eq!(&b[20..44], &[&[0u8; 20][..], &[0, 0, 0, 100]].concat()[..]);
        // §3.2.3.3 Data SubPacket: reserved 6, Kind 0 (data), Length 88 (without padding; none here).
        assert_eq!(&b[44..56], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 88]);
        assert_eq!(&b[56..56 + 88], &want[..]);
        assert_eq!(b.len(), TRANSFER_LEN);
        assert!(
            b[144..].iter().all(|x| *x == 0),
            "zeros to the end of the 2048-byte transfer"
        );
        // A payload that is not a multiple of four is padded, and the SubPacket length leaves the
        // padding out (the Revert below: 27 bytes, padded to 28).
    }

    #[test]
    fn revert_is_byte_exact() {
        // Opal SSC 2.01 §5.1.2 Revert invoked on the Admin SP object (0000020500000001), method UID
        // 0000000600000202, no parameters; inside the session: Packet TSN/HSN from SyncSession
        // (Core §3.2.3.2).
        let b = revert_admin_sp(0x07fe, 0x1001, 0x41);
        let want = [
            0xf8, 0xa8, 0, 0, 0x02, 0x05, 0, 0, 0, 0x01, 0xa8, 0, 0, 0, 0x06, 0, 0, 0x02, 0x02, 0xf0, 0xf1, 0xf9, 0xf0,
            0, 0, 0, 0xf1,
        ];
        assert_eq!(&b[4..6], &[0x07, 0xfe]);
        assert_eq!(be32(&b, 16), 24 + 12 + 28);
        assert_eq!((be32(&b, 20), be32(&b, 24)), (0x1001, 0x41));
        assert_eq!(be32(&b, 40), 12 + 28);
        assert_eq!(be32(&b, 52), 27);
        assert_eq!(&b[56..83], &want);
    }

    #[test]
    fn atoms_follow_core_3_2_2_3() {
        // Tiny atom 0..=63 (§3.2.2.3.1.1); short atom 80h | length, big-endian, fewest bytes
        // (§3.2.2.3.1.2): 64 = 81 40, 0x1001 = 82 10 01; bytes: A0h | length up to 15; medium atom
        // D0h | length 10:8, length 7:0 (§3.2.2.3.1.3).
        let mut t = Tokens::default();
        t.uint(0).uint(63).uint(64).uint(0x1001).uint(u64::MAX);
        assert_eq!(
            t.0,
            [0x00, 0x3f, 0x81, 0x40, 0x82, 0x10, 0x01, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        let mut t = Tokens::default();
        t.bytes(&[]).bytes(&[7; 15]).bytes(&[9; 16]).bytes(&[1; 300]);
        assert_eq!(&t.0[..2], &[0xa0, 0xaf]);
        assert_eq!(&t.0[17..19], &[0xd0, 0x10]);
        assert_eq!(&t.0[35..37], &[0xd1, 0x2c]);
        // The parser reads back what the writer wrote.
        let a = parse_answer(&answer(1, 0, 0, &t.0)).unwrap();
        assert_eq!(a.tokens[0], Token::Bytes(vec![]));
        assert_eq!(a.tokens[3], Token::Bytes(vec![1; 300]));
    }

    #[test]
    fn sync_session_gives_the_session_numbers_and_status() {
        // Core §5.2.3.2 SyncSession: [HostSessionID SPSessionID], then EndOfData and the status list.
        let a = parse_answer(&sync_session(0x07fe, 0x1001, 0)).unwrap();
        assert_eq!(a.status(), Ok(MethodStatus::Success));
        assert_eq!(a.sync_session(), Ok((0x1001, 0x41)));
        // A wrong PSID: the Session Manager answers NOT_AUTHORIZED (Core §5.1.5: 01h).
        let refused = parse_answer(&method_status(0x07fe, 0, 0, 0x01)).unwrap();
        assert_eq!(refused.status(), Ok(MethodStatus::NotAuthorized));
        assert_eq!(refused.sync_session(), Err(AnswerError::NotSync));
    }

    #[test]
    fn status_codes_are_core_5_1_5() {
        for (code, name) in [
            (0x00, "SUCCESS"),
            (0x01, "NOT_AUTHORIZED"),
            (0x03, "SP_BUSY"),
            (0x04, "SP_FAILED"),
            (0x05, "SP_DISABLED"),
            (0x06, "SP_FROZEN"),
            (0x07, "NO_SESSIONS_AVAILABLE"),
            (0x08, "UNIQUENESS_CONFLICT"),
            (0x09, "INSUFFICIENT_SPACE"),
            (0x0a, "INSUFFICIENT_ROWS"),
            (0x0c, "INVALID_PARAMETER"),
            (0x0f, "TPER_MALFUNCTION"),
            (0x10, "TRANSACTION_FAILURE"),
            (0x11, "RESPONSE_OVERFLOW"),
            (0x12, "AUTHORITY_LOCKED_OUT"),
            (0x3f, "FAIL"),
        ] {
            let s = MethodStatus::from_code(code);
            assert_eq!(s.code(), code);
            assert!(s.describe().ends_with(name), "{code:#x}: {}", s.describe());
        }
        assert_eq!(MethodStatus::from_code(0x02), MethodStatus::Other(2));
    }

    #[test]
    fn pending_short_and_truncated_answers_are_errors() {
        // Core §3.2.3.1: a ComPacket with Length 0, OutstandingData > 0 and MinTransfer 0 means the
        // answer is not ready yet: ask again.
        let mut pending = vec![0u8; TRANSFER_LEN];
        pending[8..12].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(parse_answer(&pending), Err(AnswerError::Pending));
        assert_eq!(parse_answer(&[0u8; TRANSFER_LEN]), Err(AnswerError::Empty));
        assert_eq!(parse_answer(&[0u8; 10]), Err(AnswerError::Short(10)));
        let mut cut = method_status(1, 0, 0, 0);
        cut[52..56].copy_from_slice(&5000u32.to_be_bytes());
        assert_eq!(parse_answer(&cut), Err(AnswerError::Truncated));
        let mut runs_past = answer(1, 0, 0, &[0xa8, 1, 2]);
        runs_past.truncate(59);
        assert_eq!(parse_answer(&runs_past), Err(AnswerError::Truncated));
        let eos = parse_answer(&answer(1, 0, 0, &[token::END_OF_SESSION])).unwrap();
        assert!(eos.end_of_session());
        assert_eq!(eos.status(), Err(AnswerError::NoStatus));
    }
}
