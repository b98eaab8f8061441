"""The audit trail: the tamper-evident, hash-chained audit log (and, later, lineage and regulator bundles)."""

from methtrader.audit.chain import GENESIS_HASH, AuditEntry, ChainBreak, ChainReport, append, verify_chain

__all__ = ["GENESIS_HASH", "AuditEntry", "ChainBreak", "ChainReport", "append", "verify_chain"]
