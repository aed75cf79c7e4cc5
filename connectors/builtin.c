/* Built-in connectors are ordinary connectors (see include/etlrun/connector.h) whose
 * entry functions are linked into etlrun; this translation unit only keeps the
 * connectors object library non-empty and documents where they are listed:
 * engine/plugins.c, registry_new(). */
#include <etlrun/connector.h>

const int etl_builtin_connectors_abi = ETL_CONNECTOR_ABI_VERSION;
