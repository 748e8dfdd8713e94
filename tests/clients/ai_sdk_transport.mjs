// Drives the AI SDK's own `DefaultChatTransport` (what `useChat` uses) against an `ai-sdk` route:
// `sendMessages` posts the chat exactly as useChat does, `reconnectToStream` is useChat's resume
// (`GET <api>/<chatId>/stream`). Each stream is read with the SDK's `readUIMessageStream`, which
// rebuilds the assistant message as useChat shows it.
//
// stdin: {"api": url, "steps": [step, ...]}, run in order; stdout: a JSON list, one result a step.
//   {"do": "send", "chatId", "messages": [UIMessage], "trigger"?, "messageId"?, "body"?, "at"?}
//   {"do": "reconnect", "chatId", "at"?}
//   {"do": "delete", "chatId"}                   -> {"status", "body"}
// A step with "api" goes to that route instead (another instance's).
// "at": {"type": <chunk type>, "action": "abort" | "delete"}: at the first chunk of that type,
//   abort the fetch (what a page reload or stop() does) or DELETE <api>/<chatId>/stream and read on.
// send / reconnect -> {"none": true} when reconnectToStream answers null (a 204), else
//   {"chunks": [...], "message": the rebuilt UIMessage, "aborted", "deleted": status | null,
//    "error": the transport's error message | null}
import { DefaultChatTransport, readUIMessageStream } from 'ai';

async function deleteStream(api, chatId) {
  const response = await fetch(`${api}/${chatId}/stream`, { method: 'DELETE' });
  return { status: response.status, body: await response.json() };
}

async function read(api, step, open) {
  const controller = new AbortController();
  const result = { chunks: [], message: null, aborted: false, deleted: null, error: null };
  let deleting = null;
  let stream;
  try {
    stream = await open(controller.signal);
  } catch (error) {
    return { ...result, error: String(error.message ?? error) };
  }
  if (stream === null) return { none: true };
  const recorded = stream.pipeThrough(
    new TransformStream({
      transform(chunk, out) {
        result.chunks.push(chunk);
        out.enqueue(chunk);
        if (step.at && chunk.type === step.at.type && !result.aborted && deleting === null) {
          if (step.at.action === 'abort') {
            result.aborted = true;
            controller.abort();
          } else {
            deleting = deleteStream(api, step.chatId);
          }
        }
      },
    }),
  );
  try {
    for await (const message of readUIMessageStream({ stream: recorded })) {
      result.message = message;
    }
  } catch (error) {
    if (!result.aborted) result.error = String(error.message ?? error);
  }
  if (deleting !== null) result.deleted = (await deleting).status;
  return result;
}

const input = JSON.parse(await new Response(process.stdin).text());
const results = [];
for (const step of input.steps) {
  const api = step.api ?? input.api;
  const transport = new DefaultChatTransport({ api });
  if (step.do === 'delete') {
    results.push(await deleteStream(api, step.chatId));
  } else if (step.do === 'send') {
    const options = step.body ? { body: step.body } : {};
    results.push(
      await read(api, step, (abortSignal) =>
        transport.sendMessages({
          chatId: step.chatId,
          messages: step.messages,
          trigger: step.trigger ?? 'submit-message',
          messageId: step.messageId,
          abortSignal,
          ...options,
        }),
      ),
    );
  } else {
    results.push(await read(api, step, () => transport.reconnectToStream({ chatId: step.chatId })));
  }
}
process.stdout.write(JSON.stringify(results));
