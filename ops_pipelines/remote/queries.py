"""The GraphQL documents the commands send (launches go through ``DagsterGraphQLClient``).

They are plain GraphQL over HTTP POST: docs/graphql.md shows them as curl examples for other services.
"""

REPOSITORIES = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name } assetNodes { assetKey { path } } }
    }
    ... on Error { message }
  }
  workspaceOrError {
    ... on Workspace {
      locationEntries { name locationOrLoadError { __typename ... on PythonError { message } } }
    }
  }
}
"""

_PARTITIONING = """
  assetKey { path }
  partitionDefinition { dimensionTypes { name dynamicPartitionsDefinitionName } }
  partitionKeysByDimension { name partitionKeys }
"""

JOB_PARTITIONING = f"""
query JobPartitioning($job: PipelineSelector!) {{
  assetNodes(pipeline: $job) {{ {_PARTITIONING} }}
}}
"""

ASSET_PARTITIONING = f"""
query AssetPartitioning($assets: [AssetKeyInput!]) {{
  assetNodes(assetKeys: $assets) {{ {_PARTITIONING} }}
}}
"""

PARTITION_TAGS = """
query PartitionTags($job: PipelineSelector!, $partition: String!) {
  pipelineOrError(params: $job) {
    __typename
    ... on Pipeline {
      partition(partitionName: $partition) {
        tagsOrError { __typename ... on PartitionTags { results { key value } } ... on PythonError { message } }
      }
    }
    ... on Error { message }
  }
}
"""

RUN_EVENTS = """
query RunEvents($runId: ID!, $cursor: String) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      jobName
      status
      eventConnection(afterCursor: $cursor, limit: 1000) {
        cursor
        hasMore
        events {
          __typename
          ... on ExecutionStepFailureEvent { stepKey message error { message } failureMetadata { description } }
          ... on RunFailureEvent { message error { message } }
        }
      }
    }
    ... on Error { message }
  }
}
"""

LAUNCH_BACKFILL = """
mutation LaunchBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

BACKFILL = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      status
      error { message }
      runs { runId status tags { key value } }
    }
    ... on Error { message }
  }
}
"""
