#ifndef VOICECORE_CLIBPQ_SHIM_H
#define VOICECORE_CLIBPQ_SHIM_H

// libpq 15 (Debian 12 libpq-dev); the include path comes from `pkg-config --cflags libpq`.
#include <libpq-fe.h>

// Field codes for PQresultErrorField are char-literal macros, which Swift does not import.
static const int VC_PG_DIAG_SEVERITY = PG_DIAG_SEVERITY;
static const int VC_PG_DIAG_SQLSTATE = PG_DIAG_SQLSTATE;
static const int VC_PG_DIAG_MESSAGE_PRIMARY = PG_DIAG_MESSAGE_PRIMARY;
static const int VC_PG_DIAG_MESSAGE_DETAIL = PG_DIAG_MESSAGE_DETAIL;
static const int VC_PG_DIAG_MESSAGE_HINT = PG_DIAG_MESSAGE_HINT;
static const int VC_PG_DIAG_CONSTRAINT_NAME = PG_DIAG_CONSTRAINT_NAME;
static const int VC_PG_DIAG_TABLE_NAME = PG_DIAG_TABLE_NAME;
static const int VC_PG_DIAG_COLUMN_NAME = PG_DIAG_COLUMN_NAME;
static const int VC_PG_DIAG_STATEMENT_POSITION = PG_DIAG_STATEMENT_POSITION;

#endif
