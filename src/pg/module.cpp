// Module entry: magic block and one-time initialisation.
#include "pg/scann_index.h"
#include "pg/scann_options.h"
#include "pg/scann_variant.h"

extern "C" {

PG_MODULE_MAGIC;

void _PG_init(void);

void _PG_init(void) {
  scann::pg::InitOptions();
  scann::pg::InitQuantizerCache();
  scann::pg::InitAnnoyCache();
}

}  // extern "C"
