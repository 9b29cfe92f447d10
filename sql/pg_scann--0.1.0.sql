-- pg_scann 0.1.0: distance operators on real[] and the scann index access method.
\echo Use "CREATE EXTENSION pg_scann" to load this file. \quit

-- Distances.  All take two real[] vectors of the same length (one-dimensional, no NULL,
-- NaN or infinite elements) and raise an error otherwise.
CREATE FUNCTION l2_distance(real[], real[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_l2_distance'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION l2_distance(real[], real[]) IS 'Euclidean distance';

CREATE FUNCTION l2_squared_distance(real[], real[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_l2_squared_distance'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION l2_squared_distance(real[], real[]) IS 'squared Euclidean distance';

CREATE FUNCTION inner_product(real[], real[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_inner_product'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION inner_product(real[], real[]) IS 'inner (dot) product';

CREATE FUNCTION negative_inner_product(real[], real[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_negative_inner_product'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION negative_inner_product(real[], real[]) IS 'negative inner product: smaller is more similar';

CREATE FUNCTION cosine_distance(real[], real[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'scann_cosine_distance'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cosine_distance(real[], real[]) IS '1 - cosine similarity; NaN when either vector is all zeros';

CREATE OPERATOR <-> (
    LEFTARG = real[], RIGHTARG = real[], FUNCTION = l2_distance, COMMUTATOR = '<->'
);
COMMENT ON OPERATOR <->(real[], real[]) IS 'Euclidean distance';

CREATE OPERATOR <#> (
    LEFTARG = real[], RIGHTARG = real[], FUNCTION = negative_inner_product, COMMUTATOR = '<#>'
);
COMMENT ON OPERATOR <#>(real[], real[]) IS 'negative inner product';

CREATE OPERATOR <=> (
    LEFTARG = real[], RIGHTARG = real[], FUNCTION = cosine_distance, COMMUTATOR = '<=>'
);
COMMENT ON OPERATOR <=>(real[], real[]) IS 'cosine distance';

-- The scann access method: lists (IVF's k-means partitions, or annoy's tree leaves) of 4-bit
-- product-quantization codes scanned with FastScan, then exact re-ranking from the table.  See README.md for options and GUCs.
CREATE FUNCTION scann_handler(internal) RETURNS index_am_handler
    AS 'MODULE_PATHNAME' LANGUAGE C;

CREATE ACCESS METHOD scann TYPE INDEX HANDLER scann_handler;
COMMENT ON ACCESS METHOD scann IS 'approximate nearest-neighbour index (ScaNN recipe)';

-- One operator class per distance; each orders by its operator (strategy 1) and names
-- the exact distance function as support function 1.
CREATE OPERATOR CLASS l2_ops DEFAULT FOR TYPE real[] USING scann AS
    OPERATOR 1 <-> (real[], real[]) FOR ORDER BY float_ops,
    FUNCTION 1 l2_distance(real[], real[]);

CREATE OPERATOR CLASS ip_ops FOR TYPE real[] USING scann AS
    OPERATOR 1 <#> (real[], real[]) FOR ORDER BY float_ops,
    FUNCTION 1 negative_inner_product(real[], real[]);

CREATE OPERATOR CLASS cosine_ops FOR TYPE real[] USING scann AS
    OPERATOR 1 <=> (real[], real[]) FOR ORDER BY float_ops,
    FUNCTION 1 cosine_distance(real[], real[]);

-- What a scann index holds, read from its pages: the variant and the options frozen at build
-- (annoy's trees and the table rows per leaf it aimed at; null for ivf), the rows it was built
-- on, the slots holding a row (dead rows included until VACUUM removes them; annoy files a row
-- in one leaf of every tree), the free slots, the smallest and largest list (annoy: leaf) and
-- the empty ones, the index's pages.  Needs SELECT on the indexed table.
CREATE FUNCTION scann_index_info(index regclass,
    OUT trained boolean, OUT variant text, OUT metric text, OUT dims integer,
    OUT lists integer, OUT trees integer, OUT leaf_size integer,
    OUT dims_per_subspace integer, OUT sample_rows integer, OUT build_rows float8,
    OUT entries bigint, OUT free_slots bigint, OUT smallest_list bigint,
    OUT largest_list bigint, OUT empty_lists bigint, OUT pages bigint)
    AS 'MODULE_PATHNAME', 'scann_index_info'
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

-- Diagnostics: raises an error of the given kind inside guarded C++ code (see
-- src/pg/guard.h); used by the regression tests of the C++/PostgreSQL boundary.
CREATE FUNCTION scann_guard_selftest(mode text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'scann_guard_selftest'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
