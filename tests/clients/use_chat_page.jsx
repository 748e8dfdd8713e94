// A page built on the AI SDK's `useChat`, unchanged, against streamserver's `ai-sdk` route: what a
// user's own page does, and nothing more. Bundled with esbuild at test time (test_use_chat_page.py).
//
// The query string picks the chat (`chat`), the model (`model`) and whether tools are offered
// (`tools=1`: a `get_weather` the page answers itself, then useChat sends the result back).
// The messages are kept in sessionStorage, so a reload shows them again, and `resume: true` picks
// the answer in progress up (the replay replaces the partial reply: same message id).
// Stop is useChat's `stop()` plus `DELETE /api/chat/<id>/stream`, which ends the generation.
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport, lastAssistantMessageIsCompleteWithToolCalls } from 'ai';
import { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';

const API = '/api/chat';
const query = new URLSearchParams(location.search);
const chatId = query.get('chat') ?? 'page-chat';
const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city.',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
    },
  },
};
const body = { model: query.get('model') ?? 'simulated' };
if (query.get('tools')) body.tools = [WEATHER_TOOL];
const transport = new DefaultChatTransport({ api: API, body });
const saved = JSON.parse(sessionStorage.getItem(chatId) ?? '[]');

function Part({ part }) {
  if (part.type === 'text') return <p className="text">{part.text}</p>;
  if (part.type === 'reasoning') return <p className="reasoning">{part.text}</p>;
  if (part.type.startsWith('tool-')) {
    return (
      <pre className="tool" data-state={part.state} data-call={part.toolCallId}>
        {JSON.stringify({ input: part.input, output: part.output })}
      </pre>
    );
  }
  return null;
}

function App() {
  const [text, setText] = useState('');
  const { messages, sendMessage, status, stop, addToolOutput } = useChat({
    id: chatId,
    messages: saved,
    transport,
    resume: true,
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
    onToolCall: ({ toolCall }) => {
      addToolOutput({
        tool: toolCall.toolName,
        toolCallId: toolCall.toolCallId,
        output: { city: toolCall.input.city, temperature: 21 },
      });
    },
  });
  useEffect(() => sessionStorage.setItem(chatId, JSON.stringify(messages)), [messages]);
  const onStop = async () => {
    await stop();
    await fetch(`${API}/${chatId}/stream`, { method: 'DELETE' });
  };
  return (
    <main id="chat" data-status={status}>
      {messages.map((message) => (
        <section key={message.id} className="message" data-role={message.role} data-id={message.id}>
          {message.parts.map((part, i) => (
            <Part key={i} part={part} />
          ))}
        </section>
      ))}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          sendMessage({ text });
          setText('');
        }}
      >
        <input id="prompt" value={text} onChange={(event) => setText(event.target.value)} />
        <button id="send" type="submit">Send</button>
        <button id="stop" type="button" onClick={onStop}>Stop</button>
      </form>
    </main>
  );
}

createRoot(document.getElementById('root')).render(<App />);
