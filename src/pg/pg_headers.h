// The header firewall: the only way src/pg includes PostgreSQL, always with C linkage.
// src/core never includes this file.
#pragma once

extern "C" {
#include "postgres.h"

#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/memutils.h"
}
