// Reads streamserver's ai-sdk streams with the Vercel AI SDK's own client code, as `useChat` does.
//
// `useChat` (@ai-sdk/react) is `AbstractChat` with React state; its default transport is
// `DefaultChatTransport`, which parses the SSE body as JSON events and validates each chunk against
// the SDK's `uiMessageChunkSchema` (a chunk that fails ends the request with the SDK's error). This
// script runs exactly those classes with a plain in-memory state in place of React's.
//
// stdin: a JSON list of cases; stdout: a JSON list of results, one per case, in order.
//   {"api": url, "body": {...}, "text": "the user's message",
//    "cancel": {"on": "<chunk type>", "how": "stop" | "delete"}}   (cancel is optional)
//     -> {"status", "error", "parts", "chunks", "finish": {isAbort, isError, isDisconnect,
//         finishReason}, "streamId", "cancelled"}
//   {"probe": [<chunk object>, ...]}: each object sent alone, as an SSE body, through the
//     transport's parsing -> {"accepted": [true | false, ...], "errors": [...]}
//
// The user's text becomes the request's `prompt` (what a `prepareSendMessagesRequest` adapting
// useChat to /v1/stream does); `body` is merged in (model, format). `how: "stop"` is the stop button
// (`chat.stop()`, the fetch is aborted); `how: "delete"` cancels the stream on the server
// (`DELETE /v1/streams/{id}`, id from the X-Stream-ID header) while the SDK keeps reading.
import { AbstractChat, DefaultChatTransport } from 'ai';

class MemoryState {
  constructor() {
    this.status = 'ready';
    this.error = undefined;
    this.messages = [];
  }
  pushMessage(message) {
    this.messages = this.messages.concat(message);
  }
  popMessage() {
    this.messages = this.messages.slice(0, -1);
  }
  replaceMessage(index, message) {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  }
  snapshot(thing) {
    return structuredClone(thing);
  }
}

class Chat extends AbstractChat {
  constructor(init) {
    super({ ...init, state: new MemoryState() });
  }
}

/** The default transport, recording every chunk that passed the SDK's validation. */
class RecordingTransport extends DefaultChatTransport {
  constructor(options, onChunk) {
    super(options);
    this.onChunk = onChunk;
  }
  processResponseStream(stream) {
    const onChunk = this.onChunk;
    return super.processResponseStream(stream).pipeThrough(
      new TransformStream({
        transform(chunk, controller) {
          onChunk(chunk);
          controller.enqueue(chunk);
        },
      }),
    );
  }
}

async function runChat(spec) {
  const result = { chunks: [], streamId: null, cancelled: null, finish: null };
  const origin = new URL(spec.api).origin;
  let chat;
  const cancel = (chunk) => {
    if (!spec.cancel || result.cancelled !== null || chunk.type !== spec.cancel.on) return;
    if (spec.cancel.how === 'stop') {
      result.cancelled = 'stop';
      setTimeout(() => chat.stop(), 0); // stop() waits for this very pipeline: never inside it
    } else {
      result.cancelled = fetch(`${origin}/v1/streams/${result.streamId}`, { method: 'DELETE' })
        .then((response) => response.status);
    }
  };
  const transport = new RecordingTransport(
    {
      api: spec.api,
      fetch: async (url, init) => {
        const response = await fetch(url, init);
        result.streamId = response.headers.get('x-stream-id');
        return response;
      },
      prepareSendMessagesRequest: ({ messages }) => {
        const last = messages[messages.length - 1];
        const prompt = last.parts.filter((p) => p.type === 'text').map((p) => p.text).join('');
        return { body: { ...spec.body, prompt } };
      },
    },
    (chunk) => {
      result.chunks.push(chunk);
      cancel(chunk);
    },
  );
  chat = new Chat({
    transport,
    onFinish: ({ isAbort, isError, isDisconnect, finishReason }) => {
      result.finish = { isAbort, isError, isDisconnect, finishReason: finishReason ?? null };
    },
  });
  await chat.sendMessage({ text: spec.text });
  if (result.cancelled !== null && typeof result.cancelled === 'object') {
    result.cancelled = `delete ${await result.cancelled}`;
  }
  const reply = chat.messages[chat.messages.length - 1];
  return {
    ...result,
    status: chat.status,
    error: chat.error ? String(chat.error.message) : null,
    role: reply.role,
    parts: reply.role === 'assistant' ? reply.parts : [],
  };
}

async function probe(chunks) {
  const transport = new DefaultChatTransport({});
  const accepted = [];
  const errors = [];
  for (const chunk of chunks) {
    const body = new Response(`data: ${JSON.stringify(chunk)}\n\n`).body;
    try {
      const reader = transport.processResponseStream(body).getReader();
      while (!(await reader.read()).done);
      accepted.push(true);
      errors.push(null);
    } catch (error) {
      accepted.push(false);
      errors.push(String(error.message ?? error));
    }
  }
  return { accepted, errors };
}

let input = '';
for await (const piece of process.stdin) input += piece;
const results = [];
for (const spec of JSON.parse(input)) {
  results.push(spec.probe ? await probe(spec.probe) : await runChat(spec));
}
process.stdout.write(JSON.stringify(results));
