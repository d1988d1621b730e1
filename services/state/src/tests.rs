//! The memory store against the generic suite (`testing::suite`).

use crate::MemoryStore;

#[tokio::test]
async fn memory_store_passes_the_suite() {
    crate::testing::suite(&MemoryStore::new()).await;
}
