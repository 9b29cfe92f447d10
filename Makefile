# pg_scann: PGXS build of one C++17 module from src/core (pure C++) and src/pg (glue), and of
# pg_scann_pgvector, pure SQL: scann operator classes for pgvector's types.
EXTENSION  = pg_scann pg_scann_pgvector
MODULE_big = pg_scann
DATA       = $(wildcard sql/pg_scann--*.sql) $(wildcard sql/pg_scann_pgvector--*.sql)

CORE_SRCS  = $(sort $(wildcard src/core/*.cpp))
PG_SRCS    = $(sort $(wildcard src/pg/*.cpp))
CORE_OBJS  = $(CORE_SRCS:.cpp=.o)
OBJS       = $(CORE_OBJS) $(PG_SRCS:.cpp=.o)

REGRESS      = operators guard scann_index scann_correctness scann_rerank scann_annoy scann_types scann_vamana
REGRESS_OPTS = --outputdir=$(REGRESS_OUTPUTDIR)
REGRESS_OUTPUTDIR ?= .
ISOLATION      = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=$(REGRESS_OUTPUTDIR)/isolation
TAP_TESTS  = 1

EXTRA_CLEAN = build src/core/*.d src/pg/*.d

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)

PG_CPPFLAGS = -Isrc

# C++ is not inlined by the JIT; skipping bitcode keeps the build free of clang.
override with_llvm = no

include $(PGXS)

# Portable code: no -march; SIMD translation units (*_avx2.cpp) get their own flags and
# are only entered after a run-time CPU check (src/core/isa.h).
override CXXFLAGS += -std=c++17 -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-register -O3 -fno-semantic-interposition
SHLIB_LINK  += -lstdc++ -lm

src/core/%_avx2.o: override CXXFLAGS += -mavx2 -mfma

# Header dependencies: objects are rebuilt when a header they include changes.
override CXXFLAGS += -MMD -MP
-include $(OBJS:.o=.d)

# Core unit tests (GoogleTest) and micro-benchmarks (Google Benchmark): no server needed.
UNIT_SRCS  = $(sort $(wildcard test/unit/*.cpp))
MICRO_SRCS = $(sort $(wildcard bench/micro/*.cpp))

build/core_tests: $(CORE_OBJS) $(UNIT_SRCS) | build
	$(CXX) $(CXXFLAGS) -Isrc $(UNIT_SRCS) $(CORE_OBJS) -o $@ -lgtest -lgtest_main -pthread

build/micro_bench: $(CORE_OBJS) $(MICRO_SRCS) | build
	$(CXX) $(CXXFLAGS) -Isrc $(MICRO_SRCS) $(CORE_OBJS) -o $@ -lbenchmark -lbenchmark_main -pthread

build:
	mkdir -p build

.PHONY: unittest microbench
unittest: build/core_tests
microbench: build/micro_bench

# Test lists for test/run_all.sh.
.PHONY: print-regress print-isolation
print-regress:
	@echo $(REGRESS)
print-isolation:
	@echo $(ISOLATION)
