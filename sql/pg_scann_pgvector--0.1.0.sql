-- pg_scann_pgvector 0.1.0: scann operator classes for pgvector's vector and halfvec types,
-- on pgvector's own distance operators, so that an existing pgvector column gets a scann index
-- and its queries (ORDER BY embedding <-> '[...]' LIMIT k) use it unchanged.
\echo Use "CREATE EXTENSION pg_scann_pgvector CASCADE" to load this file. \quit

-- Each class names its metric (support function 1) and pgvector's own cast to real[] (support
-- function 2), through which the index reads rows and queries: pgvector's SQL-level functions,
-- never its internal layout.  The ORDER BY values are those of pgvector's operators: the index
-- re-ranks with the operator's function (or hands the executor lower bounds to recheck with it).
CREATE OPERATOR CLASS vector_l2_ops DEFAULT FOR TYPE vector USING scann AS
    OPERATOR 1 <-> (vector, vector) FOR ORDER BY float_ops,
    FUNCTION 1 scann_l2_metric(),
    FUNCTION 2 vector_to_float4(vector, integer, boolean);

CREATE OPERATOR CLASS vector_ip_ops FOR TYPE vector USING scann AS
    OPERATOR 1 <#> (vector, vector) FOR ORDER BY float_ops,
    FUNCTION 1 scann_ip_metric(),
    FUNCTION 2 vector_to_float4(vector, integer, boolean);

CREATE OPERATOR CLASS vector_cosine_ops FOR TYPE vector USING scann AS
    OPERATOR 1 <=> (vector, vector) FOR ORDER BY float_ops,
    FUNCTION 1 scann_cosine_metric(),
    FUNCTION 2 vector_to_float4(vector, integer, boolean);

CREATE OPERATOR CLASS halfvec_l2_ops DEFAULT FOR TYPE halfvec USING scann AS
    OPERATOR 1 <-> (halfvec, halfvec) FOR ORDER BY float_ops,
    FUNCTION 1 scann_l2_metric(),
    FUNCTION 2 halfvec_to_float4(halfvec, integer, boolean);

CREATE OPERATOR CLASS halfvec_ip_ops FOR TYPE halfvec USING scann AS
    OPERATOR 1 <#> (halfvec, halfvec) FOR ORDER BY float_ops,
    FUNCTION 1 scann_ip_metric(),
    FUNCTION 2 halfvec_to_float4(halfvec, integer, boolean);

CREATE OPERATOR CLASS halfvec_cosine_ops FOR TYPE halfvec USING scann AS
    OPERATOR 1 <=> (halfvec, halfvec) FOR ORDER BY float_ops,
    FUNCTION 1 scann_cosine_metric(),
    FUNCTION 2 halfvec_to_float4(halfvec, integer, boolean);
