use super::{HandlerError, TaskHandler, TaskInput, TaskOutput};

/// Returns the payload as the result.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoHandler;

#[async_trait::async_trait]
impl TaskHandler for EchoHandler {
    async fn handle(&self, input: TaskInput) -> Result<TaskOutput, HandlerError> {
        Ok(TaskOutput::raw(input.payload))
    }
}
